"""Image features stage: corpus peaks -> MKDA spheres -> DiFuMo least-squares projection.

Output ``features/images/part-NNNNN.parquet`` (one row per study of ``studies.parquet``):

``study_id``  string
``embedding`` ``arrow.fixed_shape_tensor[float, [dim]]``, raw least-squares betas; null when failed
``n_peaks``   peaks of the study in the corpus
``n_voxels``  brain-mask voxels covered by its MKDA spheres
``atlas_id``  e.g. ``difumo512-2mm`` or ``difumo64-2mm-standin-seed0``
``error``     empty, or why the study has no embedding

A study with no peaks, a NaN/inf coordinate, or spheres that all miss the brain mask gets
an error row; the other studies of its shard are unaffected. Peaks outside the mask but
whose sphere reaches it are kept, clipped to the mask, as NiMARE does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from niclip_ray._docs import fill_doc
from niclip_ray.atlas.difumo import Atlas, load_atlas
from niclip_ray.atlas.mask import MaskGrid
from niclip_ray.atlas.projection import Projector, get_projector
from niclip_ray.corpus import load_corpus
from niclip_ray.defaults import IMAGES_SHARD_SIZE
from niclip_ray.errors import ParameterError
from niclip_ray.features.mkda import study_voxels
from niclip_ray.pipelines.shards import ProcessFn, StageSummary, run_stage
from niclip_ray.pipelines.tally import items_done
from niclip_ray.tables import error_array, tensor_array

STAGE = "images"


def study_items(corpus_dir: str | Path) -> list[dict]:
    """One manifest item per study: ``study_id`` and its peaks ``coords`` (list of [x, y, z]).

    The peaks are the shard's fingerprint: after a re-ingest that changes a study's peaks,
    a rerun recomputes its shard (:func:`niclip_ray.pipelines.shards.check_stage_dir`).
    """
    corpus = load_corpus(corpus_dir)
    coords = corpus.coordinates
    grouped = {
        str(sid): group[["x", "y", "z"]].to_numpy(dtype=np.float64).tolist()
        for sid, group in coords.groupby("study_id", sort=False)
    }
    return [{"study_id": str(sid), "coords": grouped.get(str(sid), [])} for sid in corpus.studies["study_id"]]


def embed_study(coords: list, grid: MaskGrid, radius: float) -> tuple[np.ndarray | None, int, str]:
    """MKDA voxels of one study, or why it has none.

    Returns
    -------
    (voxels or None, n_peaks, error)
    """
    peaks = np.asarray(coords, dtype=np.float64).reshape(-1, 3) if len(coords) else np.zeros((0, 3))
    if len(peaks) == 0:
        return None, 0, "no peaks"
    bad = ~np.isfinite(peaks).all(axis=1)
    if bad.any():
        return None, len(peaks), f"{int(bad.sum())} peak(s) with NaN or infinite coordinates"
    voxels = study_voxels(peaks, grid, radius)
    if len(voxels) == 0:
        return None, len(peaks), f"no peak sphere reaches the brain mask (all {len(peaks)} peaks outside it)"
    return voxels, len(peaks), ""


def process_studies(
    items: list[dict], projector: Projector, radius: float = 10.0, value: float = 1.0
) -> pa.Table:
    """Pure per-shard function: MKDA + projection for a list of studies.

    Parameters
    ----------
    items : list of dict
        ``study_id`` and ``coords`` (peaks in MNI mm).
    projector : Projector
        Atlas on the brain-mask grid.
    radius, value : float
        MKDA sphere radius (mm) and value.

    Returns
    -------
    pyarrow.Table
        The stage's columns, one row per item, in item order.
    """
    results = []
    for item in items:
        results.append(embed_study(item["coords"], projector.grid, radius))
        items_done()
    ok = np.array([voxels is not None for voxels, _, _ in results], dtype=bool)
    betas = np.zeros((len(items), projector.dim), dtype=np.float32)
    if ok.any():
        betas[ok] = projector.project_voxels([v for v, _, _ in results if v is not None], value=value)
    return pa.table(
        {
            "study_id": pa.array([str(item["study_id"]) for item in items], pa.string()),
            "embedding": tensor_array(betas, valid=ok),
            "n_peaks": pa.array([n for _, n, _ in results], pa.int32()),
            "n_voxels": pa.array([0 if v is None else len(v) for v, _, _ in results], pa.int32()),
            "atlas_id": pa.array([projector.atlas_id] * len(items), pa.string()),
            "error": error_array(e for _, _, e in results),
        }
    )


def stage_params(atlas: Atlas, radius: float, value: float) -> dict:
    """Parameters recorded in the stage manifest; a resume must match them."""
    return {"atlas_id": atlas.atlas_id, "dimension": atlas.dim, "radius": float(radius), "value": float(value)}


def make_process(atlas: Atlas, radius: float, value: float) -> ProcessFn:
    """Process factory body: build (or reuse) the projector once in this worker."""
    projector = get_projector(atlas)
    return functools.partial(process_studies, projector=projector, radius=radius, value=value)


@fill_doc
def run(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    dim: int = 512,
    atlas_dir: str | Path | None = None,
    shard_size: int = IMAGES_SHARD_SIZE,
    num_actors: int | None = None,
    allow_standin: bool = True,
    radius: float = 10.0,
    value: float = 1.0,
    seed: int = 0,
    on_items: Callable[[int, int], None] | None = None,
) -> StageSummary:
    """Compute image features of every study of a corpus on the current Ray.

    Parameters
    ----------
    %(corpus_dir)s
    out_dir : path
        Stage directory (``features/images``); a rerun resumes it.
    dim : int
        DiFuMo components.
    %(atlas_dir)s
    %(shard_size)s
    num_actors : int, optional
        Actors (default: one per cluster CPU, with fractional CPUs).
    allow_standin : bool
        Use the offline stand-in atlas when DiFuMo is not on disk.
    radius, value : float
        MKDA sphere radius (mm) and value.
    seed : int
        Seed of the stand-in atlas.
    %(on_items)s
    """
    from niclip_ray.runtime.session import cluster_cpus

    if not (np.isfinite(radius) and radius > 0):
        raise ParameterError("radius", f"(of the MKDA spheres) must be a positive number of mm, got {radius}")
    items = study_items(corpus_dir)
    atlas = load_atlas(dim, data_dir=atlas_dir, allow_standin=allow_standin, seed=seed)
    return run_stage(
        STAGE,
        items,
        key="study_id",
        out_dir=out_dir,
        factory=functools.partial(make_process, atlas, float(radius), float(value)),
        params=stage_params(atlas, radius, value),
        shard_size=shard_size,
        num_actors=num_actors or max(1, int(cluster_cpus())),
        on_items=on_items,
    )
