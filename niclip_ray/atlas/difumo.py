"""DiFuMo atlases: the real one through nilearn, or a deterministic stand-in.

The real DiFuMo maps (Dadi et al. 2020) come through ``nilearn.datasets.fetch_atlas_difumo``
from a nilearn data directory (``--atlas-dir``, ``NILEARN_DATA``, ``~/nilearn_data``).
Nothing downloads unless asked (``download=True``).

Offline, :func:`build_standin` makes an explicit stand-in in the same on-disk layout, so
``fetch_atlas_difumo(dimension=N, data_dir=DIR)`` loads it unchanged and a real cache can
replace it by pointing at another directory. The stand-in is built directly on NiMARE's
91x109x91 brain-mask grid:

1. k-means (seeded) on the mm coordinates of every 8th mask voxel gives ``dimension`` centres;
2. component k is a Gaussian around centre k with sigma = 6 mm * (512 / dim)^(1/3)
   and a seeded amplitude in [0.5, 1], set to zero below 5 % of its peak and outside the
   mask, so components are non-negative, sparse and overlapping, like DiFuMo's;
3. labels are the real DiFuMo label table shipped in templateflow's skeleton, when
   templateflow is installed (names do not match the stand-in's anatomy).

Its README carries the marker ``niclip-ray stand-in`` and the seed, and every artifact built
from it carries an ``atlas_id`` ending in ``-standin-seedS``.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.atlas.cache import (
    DIFUMO_DIMENSIONS,
    STANDIN_MARKER,
    STANDIN_VERSION,
    AtlasCache,
    default_data_dirs,
    default_standin_dir,
    find_difumo,
    standin_seed,
)
from niclip_ray.atlas.mask import brain_mask_grid
from niclip_ray.atomic import replacing, write_csv, write_text
from niclip_ray.errors import ConfigError, ParameterError

LABEL_COLUMNS = ["Component", "Difumo_names", "Yeo_networks7", "Yeo_networks17", "GM", "WM", "CSF"]
#: Relative cut-off below which a stand-in component is zero.
STANDIN_CUTOFF = 0.05
#: k-means runs on every KMEANS_STRIDE-th mask voxel.
KMEANS_STRIDE = 8


class AtlasNotFound(ParameterError, ConfigError):
    """The atlas needed is not in the data directory a parameter names (or nilearn's defaults).

    Both a :class:`~niclip_ray.errors.ParameterError`, so the CLI names the flag that points
    at the directory, and a :class:`~niclip_ray.errors.ConfigError`, as a missing atlas is.
    """


@dataclass(frozen=True)
class Atlas:
    """A DiFuMo atlas on disk.

    Attributes
    ----------
    maps_path : Path
        4-D NIfTI, one volume per component.
    labels : pandas.DataFrame
        One row per component (nilearn's lower-cased DiFuMo columns).
    atlas_id : str
        Recorded in every artifact built from this atlas.
    dim : int
        Number of components.
    standin : bool
        True for the stand-in built by :func:`build_standin`.
    data_dir : Path
        The nilearn data directory it was loaded from.
    """

    maps_path: Path
    labels: pd.DataFrame
    atlas_id: str
    dim: int
    standin: bool
    data_dir: Path

def _check_dimension(dim: int) -> int:
    if int(dim) not in DIFUMO_DIMENSIONS:
        raise ConfigError(f"DiFuMo dimension must be one of {DIFUMO_DIMENSIONS}, got {dim}")
    return int(dim)


def real_label_table(dim: int) -> pd.DataFrame | None:
    """The real DiFuMo label table from templateflow's skeleton zip, or None if unavailable."""
    try:
        import templateflow
    except ImportError:
        return None
    skeleton = Path(templateflow.__file__).parent / "conf" / "templateflow-skel.zip"
    member = (
        f"tpl-MNI152NLin6Asym/tpl-MNI152NLin6Asym_atlas-DiFuMo_desc-{dim}dimensions_probseg.tsv"
    )
    try:
        with zipfile.ZipFile(skeleton) as archive:
            table = pd.read_csv(io.BytesIO(archive.read(member)), sep="\t")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return table if list(table.columns) == LABEL_COLUMNS and len(table) == dim else None


def _standin_labels(dim: int) -> pd.DataFrame:
    table = real_label_table(dim)
    if table is not None:
        return table
    return pd.DataFrame(
        {
            "Component": np.arange(1, dim + 1),
            "Difumo_names": [f"Stand-in component {k}" for k in range(1, dim + 1)],
            "Yeo_networks7": "No network found",
            "Yeo_networks17": "No network found",
            "GM": np.nan,
            "WM": np.nan,
            "CSF": np.nan,
        }
    )


def standin_maps(dim: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Compute the stand-in components on the brain-mask grid, sparsely.

    Returns
    -------
    voxels : list of (n_k,) int64 arrays
        Masked-voxel indices of each component's support.
    values : list of (n_k,) float32 arrays
        Component values on that support.
    """
    from scipy.spatial import cKDTree
    from sklearn.cluster import KMeans

    grid = brain_mask_grid()
    ijk = np.argwhere(grid.mask_data())  # C order, same numbering as the masked voxels
    xyz = nib.affines.apply_affine(grid.affine, ijk)
    sample = xyz[::KMEANS_STRIDE]  # a regular subsample: same centres to within a voxel, 8x faster
    centres = KMeans(n_clusters=dim, n_init=1, random_state=seed).fit(sample).cluster_centers_
    centres = centres[np.lexsort(centres.T[::-1])]  # order components by position, not by k-means
    amplitudes = np.random.default_rng(seed).uniform(0.5, 1.0, dim)
    sigma = 6.0 * (512.0 / dim) ** (1.0 / 3.0)
    reach = sigma * np.sqrt(-2.0 * np.log(STANDIN_CUTOFF))
    tree = cKDTree(xyz)
    voxels, values = [], []
    for centre, amplitude in zip(centres, amplitudes):
        idx = np.sort(np.asarray(tree.query_ball_point(centre, reach), dtype=np.int64))
        dist2 = ((xyz[idx] - centre) ** 2).sum(axis=1)
        weight = np.exp(-dist2 / (2.0 * sigma**2))
        keep = weight >= STANDIN_CUTOFF
        voxels.append(idx[keep])
        values.append((amplitude * weight[keep]).astype(np.float32))
    return voxels, values


def _readme(seed: int) -> str:
    return (
        f"# DiFuMo {STANDIN_MARKER}\n\n"
        "This is NOT the DiFuMo atlas (Dadi et al. 2020). It is a deterministic stand-in built by\n"
        "`niclip-ray atlas build-standin` so that the pipeline runs offline: seeded k-means centres\n"
        "on NiMARE's 2 mm MNI152 brain mask, one Gaussian component per centre, cut below 5 %.\n"
        "The label table is DiFuMo's (from templateflow) and does not describe these components.\n"
        "Point --atlas-dir at a real nilearn DiFuMo cache to use the real atlas.\n\n"
        f"seed: {seed}\n"
        f"recipe version: {STANDIN_VERSION}\n"
    )


def build_standin(out_dir: str | os.PathLike, dim: int, seed: int = 0) -> Path:
    """Write a stand-in DiFuMo atlas in nilearn's cache layout (or reuse an identical one).

    Parameters
    ----------
    out_dir : path
        A nilearn data directory; files go to ``out_dir/difumo_atlases/``.
    dim : int
        64, 128, 256, 512 or 1024 components.
    seed : int
        Seed of the k-means centres and amplitudes.

    Returns
    -------
    Path
        The 4-D ``maps.nii.gz`` (91x109x91xdimension, float32).

    Raises
    ------
    ConfigError
        When ``out_dir`` holds a real DiFuMo cache or a stand-in with another seed.
    """
    dim = _check_dimension(dim)
    root = Path(out_dir).expanduser() / "difumo_atlases"
    readme = root / "README.md"
    maps_path = root / str(dim) / "2mm" / "maps.nii.gz"
    if readme.is_file():
        existing = standin_seed(readme)
        if STANDIN_MARKER not in readme.read_text(errors="replace"):
            raise ConfigError(f"{root} holds a real DiFuMo cache; build the stand-in in another directory")
        if existing != seed:
            raise ConfigError(
                f"{root} holds a stand-in built with seed {existing}; use another directory for seed {seed}"
            )
        if maps_path.is_file():
            return maps_path
    grid = brain_mask_grid()
    voxels, values = standin_maps(dim, seed)
    data = np.zeros(grid.shape + (dim,), dtype=np.float32, order="F")
    for k, (idx, val) in enumerate(zip(voxels, values)):
        volume = np.zeros(grid.n_voxels, dtype=np.float32)
        volume[idx] = val
        data[..., k] = grid.unmask(volume)
    img = nib.Nifti1Image(data, grid.affine)
    img.header.set_xyzt_units("mm")
    with replacing(maps_path) as tmp:
        nib.save(img, tmp)
    write_csv(root / str(dim) / f"labels_{dim}_dictionary.csv", _standin_labels(dim))
    if not readme.is_file():
        write_text(readme, _readme(seed))
    return maps_path


def _from_cache(cache: AtlasCache) -> Atlas:
    from nilearn.datasets import fetch_atlas_difumo

    bunch = fetch_atlas_difumo(dimension=cache.dim, resolution_mm=2, data_dir=str(cache.data_dir), verbose=0)
    labels = pd.DataFrame(bunch.labels)
    return Atlas(Path(bunch.maps), labels, cache.atlas_id, cache.dim, cache.standin, cache.data_dir)


def load_atlas(
    dim: int = 512,
    data_dir: str | os.PathLike | None = None,
    allow_standin: bool = True,
    seed: int = 0,
    download: bool = False,
) -> Atlas:
    """Load DiFuMo at ``dimension`` (2 mm), real if available, else the stand-in.

    Parameters
    ----------
    dim : int
        64, 128, 256, 512 or 1024.
    data_dir : path, optional
        nilearn data directory holding ``difumo_atlases/`` (real or stand-in). Default:
        ``NILEARN_DATA``, ``NILEARN_SHARED_DATA``, ``~/nilearn_data``.
    allow_standin : bool
        When no atlas is on disk (and none is downloaded), build or reuse the stand-in in
        :func:`default_standin_dir`. When False, a missing real atlas is an error.
    seed : int
        Seed of the stand-in.
    download : bool
        Let nilearn download the real atlas into ``data_dir`` when it is not on disk.

    Raises
    ------
    ParameterError
        ``data_dir`` does not exist.
    AtlasNotFound
        No atlas found (and no stand-in allowed).
    ConfigError
        A dimension DiFuMo does not have, or the download failed.
    """
    dim = _check_dimension(dim)
    dirs = [Path(data_dir).expanduser()] if data_dir is not None else default_data_dirs()
    if data_dir is not None and not dirs[0].is_dir():
        raise ParameterError("data_dir", f"{data_dir} does not exist")
    found = [c for c in find_difumo(dirs) if c.dim == dim]
    real = [c for c in found if not c.standin]
    if real:
        return _from_cache(real[0])
    if download:
        from nilearn.datasets import fetch_atlas_difumo

        try:
            fetch_atlas_difumo(dimension=dim, resolution_mm=2, data_dir=str(dirs[0]), verbose=0)
        except Exception as exc:  # network failures come in many types
            raise ConfigError(f"could not download DiFuMo {dim} into {dirs[0]}: {exc}") from exc
        return _from_cache(AtlasCache(dirs[0], dim, False))
    if found and allow_standin:
        return _from_cache(found[0])
    if not allow_standin:
        where = ", ".join(str(d) for d in dirs)
        only = " (only a stand-in)" if found else ""
        raise AtlasNotFound(
            "data_dir",
            f"holds no DiFuMo {dim} atlas{only} (searched {where}); point it at a nilearn data directory "
            "holding difumo_atlases/, or allow the offline stand-in",
        )
    standin_dir = default_standin_dir(seed)
    build_standin(standin_dir, dim, seed)
    return _from_cache(AtlasCache(standin_dir, dim, True, seed))
