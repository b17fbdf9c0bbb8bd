"""Batch decoding on Ray: maps -> ``decode/part-NNNNN.parquet`` (the decode contract, :mod:`niclip_ray.decoding.schema`).

Each actor loads the bundle, builds the CLIP features of the vocabulary and the atlas
projector once (:class:`~niclip_ray.decoding.decoder.Decoder`), then decodes its shards:
every map is projected on its own (a bad map becomes one error row) and the good ones
are scored together, vectorised. Sharding, resume and atomic writes come from
:func:`niclip_ray.pipelines.shards.run_stage`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from niclip_ray.decoding.decoder import Decoder, bundle_digest, nonfinite_maps, resolve_atlas
from niclip_ray.decoding.map_files import check_map, file_stamp, load_item
from niclip_ray.decoding.schema import DECODE_SCHEMA
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.model.bundle import load_bundle
from niclip_ray.pipelines.shards import ProcessFn, StageSummary, run_stage
from niclip_ray.pipelines.tally import items_done

STAGE = "decode"


def decode_items(decoder: Decoder, items: list[dict], strict: bool = False) -> pa.Table:
    """Decode one shard of manifest items with a ready decoder (pure; no Ray).

    Each map's header is checked first (:func:`~niclip_ray.decoding.map_files.check_map`):
    its warning goes to every row of the map, or, when ``strict``, becomes its error. A map
    whose scores are not numbers (:func:`~niclip_ray.decoding.decoder.nonfinite_maps`) is an
    error too, never a result. The item's ``input_warning`` (unreadable NeuroVault
    metadata) is added to its rows' warning.

    Returns
    -------
    pyarrow.Table
        :data:`~niclip_ray.decoding.schema.DECODE_SCHEMA`; a map that fails gets one row with its
        ``error`` and nulls elsewhere.
    """
    betas, good, failed, warnings = [], [], [], {}
    for item in items:
        try:
            found = [item.get("input_warning", ""), check_map(item, decoder.projector.grid, strict)]
            warnings[item["map_id"]] = "; ".join(w for w in found if w)
            betas.append(decoder.project(load_item(item), name=f"{item['map_id']} ({item['source_path']})"))
            good.append(item)
        except InputError as exc:
            failed.append((item, str(exc)))
        except Exception as exc:  # an unexpected per-map failure must not take the shard down
            failed.append((item, f"map {item['map_id']}: {type(exc).__name__}: {exc}"))
        items_done()
    betas = np.stack(betas) if betas else np.zeros((0, 1), np.float32)
    frame = decoder.decode_features(betas, [i["map_id"] for i in good])
    nonfinite = nonfinite_maps(frame)
    failed += [(item, nonfinite[item["map_id"]]) for item in good if item["map_id"] in nonfinite]
    frame = frame[~frame["map_id"].isin(nonfinite)].reset_index(drop=True)
    source = {i["map_id"]: i["source_path"] for i in good}
    frame["source_path"] = frame["map_id"].map(source)
    frame["error"] = None
    frame["warning"] = frame["map_id"].map(warnings)
    errors = pd.DataFrame(
        {
            "map_id": [i["map_id"] for i, _ in failed],
            "source_path": [i["source_path"] for i, _ in failed],
            "error": [message for _, message in failed],
            "warning": [""] * len(failed),
        }
    )
    table = pd.concat([frame, errors], ignore_index=True) if len(errors) else frame
    table["rank"] = table["rank"].astype("Int32")
    columns = {}
    for name in DECODE_SCHEMA.names:
        values = table[name].astype(object)
        columns[name] = pa.array(values.where(table[name].notna(), None).tolist(), DECODE_SCHEMA.field(name).type)
    return pa.table(columns, schema=DECODE_SCHEMA)


def make_process(
    bundle_path: str,
    topk: int | None = 10,
    logit_scale: float | None = None,
    atlas_dir: str | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
    strict: bool = False,
) -> ProcessFn:
    """Process factory run inside each actor: build the decoder (and its projector) once."""
    decoder = Decoder(
        bundle_path,
        topk=topk,
        logit_scale=logit_scale,
        atlas_dir=atlas_dir,
        allow_atlas_mismatch=allow_atlas_mismatch,
        hierarchical=hierarchical,
    )
    decoder.projector  # noqa: B018 - build the projector now, not inside the first shard
    return functools.partial(decode_items, decoder, strict=strict)


def validate(
    bundle_path: str | os.PathLike,
    atlas_dir: str | os.PathLike | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
) -> Path:
    """Check a bundle and its atlas before any actor starts (needs no Ray).

    Returns
    -------
    Path
        The resolved bundle directory.

    Raises
    ------
    InputError, ConfigError
        Bad or tampered bundle, no vocabulary, no ontology for ``hierarchical=True``, or
        no matching atlas.
    """
    bundle_path = Path(bundle_path).resolve()
    bundle = load_bundle(bundle_path)
    bundle.require_vocabulary()
    if hierarchical and bundle.ontology is None:
        raise ParameterError("hierarchical", f"needs a bundle with an ontology, but bundle {bundle_path} has no "
                             "ontology: decode tasks only, or attach one")
    resolve_atlas(bundle, atlas_dir, allow_atlas_mismatch)
    return bundle_path


def run(
    maps: list[dict],
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    topk: int | None = 10,
    logit_scale: float | None = None,
    atlas_dir: str | os.PathLike | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
    shard_size: int = 64,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    strict: bool = False,
    in_process: bool = False,
    on_items: Callable[[int, int], None] | None = None,
) -> StageSummary:
    """Decode ``maps`` (items of :func:`niclip_ray.decoding.map_files.collect_maps`) into ``out_dir``.

    The bundle is checked (:func:`validate`) on the driver before any actor starts. Each
    map's file is fingerprinted (:func:`~niclip_ray.decoding.map_files.file_stamp`: size,
    mtime and sha256), so a rerun skips finished shards only while their files are
    unchanged; a shard with a changed file is decoded again. ``strict`` refuses maps
    without a transform or only partly over the brain mask instead of warning.
    ``in_process`` decodes in this process without Ray (a few maps), writing the same files.
    ``on_items(n, total)`` is told as maps are decoded (for progress).

    Returns
    -------
    StageSummary
        Counts maps (``unit="maps"``); rows are prediction rows, each failed map one row.
    """
    bundle_path = validate(bundle_path, atlas_dir, allow_atlas_mismatch, hierarchical)
    params = {
        "bundle": str(bundle_path),
        "bundle_manifest": bundle_digest(bundle_path),
        "topk": topk,
        "logit_scale": logit_scale,
        "atlas_dir": str(atlas_dir) if atlas_dir else None,
        "hierarchical": hierarchical,
        "strict": strict,
    }
    maps = [{**item, "file": file_stamp(item["source_path"])} for item in maps]
    factory = functools.partial(
        make_process,
        str(bundle_path),
        topk=topk,
        logit_scale=logit_scale,
        atlas_dir=str(atlas_dir) if atlas_dir else None,
        allow_atlas_mismatch=allow_atlas_mismatch,
        hierarchical=hierarchical,
        strict=strict,
    )
    return run_stage(
        STAGE,
        maps,
        key="map_id",
        out_dir=out_dir,
        factory=factory,
        params=params,
        shard_size=shard_size,
        num_actors=num_actors,
        cpus_per_actor=cpus_per_actor,
        unit="maps",
        in_process=in_process,
        on_items=on_items,
    )

