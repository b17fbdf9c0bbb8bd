"""Least-squares projection of brain maps on atlas components.

For a map ``y`` on a voxel grid and atlas maps ``X`` (voxels x components) on the same
grid, the projection is ``beta = argmin ||X beta - y||``, computed from the normal equations
``(X'X + ridge I) beta = X'y``: :func:`project` is that computation, a pure function of the
maps and the atlas matrix. ``X'X`` depends only on the atlas and the grid, so a
:class:`Projector` computes its Cholesky factor once (:func:`normal_factor`); each map then
costs one product ``X'y`` and a triangular solve (:func:`solve_normal`). With ``ridge=0``
this is exactly the least-squares solution of nilearn's ``NiftiMapsMasker``
(``img_to_signals_maps``); the default ``ridge=1e-6`` (as in NiCLIP's current code) only
guards against a singular ``X'X``.

Only voxels where some component is non-zero enter ``X`` (other voxels add nothing to
``X'X`` or ``X'y``), and ``X`` is kept sparse. A binary MKDA map touches a few thousand
voxels, so ``X'y`` is the sum of the atlas rows inside its spheres (:meth:`Projector.project_voxels`).

The grid is NiMARE's 2 mm MNI152 brain-mask grid (91x109x91) unless another is given. Atlas
maps on a different grid (the real DiFuMo is 104x123x104) are resampled to it once, one
component at a time, with linear interpolation, as ``NiftiMapsMasker`` does when it
resamples the maps to the data (the paper-era NiCLIP path). Images to project are resampled
to the same grid with continuous interpolation, as ``resample_to_img`` does, but only at the
atlas voxels and with the geometry cached per input grid (:mod:`niclip_ray.atlas.resample`),
then NaN/inf -> 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from niclip_ray.atlas.cache import atlas_cache_root
from niclip_ray.atlas.difumo import Atlas
from niclip_ray.atlas.maps import iter_volumes, load_map
from niclip_ray.atlas.mask import MaskGrid, brain_mask_grid
from niclip_ray.atlas.resample import SamplerCache, on_grid, resample_volume
from niclip_ray.atomic import replacing
from niclip_ray.errors import ConfigError


def normal_factor(maps: sp.spmatrix, ridge: float = 1e-6) -> tuple[np.ndarray, bool]:
    """Cholesky factor of ``X'X + ridge I`` for atlas maps ``X`` ``(n_voxels, n_components)``.

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``X'X + ridge I`` is not positive definite.
    """
    gram = (maps.T @ maps).toarray() + float(ridge) * np.eye(maps.shape[1])
    return scipy.linalg.cho_factor(gram, lower=True, check_finite=False)


def solve_normal(factor: tuple[np.ndarray, bool], xty: np.ndarray) -> np.ndarray:
    """Solve the normal equations for right-hand sides ``X'y`` ``(n_maps, n_components)``; float32."""
    xty = np.atleast_2d(np.asarray(xty, dtype=np.float64))
    return scipy.linalg.cho_solve(factor, xty.T, check_finite=False).T.astype(np.float32)


def project(values: np.ndarray, maps: sp.spmatrix | np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares coefficients of maps on atlas components (the projection itself).

    Parameters
    ----------
    values : (n_maps, n_voxels) or (n_voxels,) array
        Maps on the atlas's voxels; NaN and inf count as 0.
    maps : (n_voxels, n_components) sparse or dense array
        The atlas on the same voxels.
    ridge : float
        Added to the diagonal of ``X'X``.

    Returns
    -------
    (n_maps, n_components) float32
        ``beta`` solving ``(X'X + ridge I) beta = X'y`` for each map.

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``X'X + ridge I`` is not positive definite.
    """
    maps = sp.csr_matrix(maps, dtype=np.float64)
    values = np.nan_to_num(np.atleast_2d(np.asarray(values, dtype=np.float64)), nan=0.0, posinf=0.0, neginf=0.0)
    return solve_normal(normal_factor(maps, ridge), (maps.T @ values.T).T)


def atlas_matrix(maps_path: str | os.PathLike, grid: MaskGrid, interpolation: str = "linear") -> sp.csc_matrix:
    """The atlas as a sparse ``(n_grid_voxels, n_components)`` matrix on ``grid`` (C order).

    Volumes are streamed one at a time and resampled to ``grid`` when needed, with
    ``interpolation`` (linear, as ``NiftiMapsMasker`` resamples maps). NaN and inf are set to 0.
    """
    columns = []
    n_grid = int(np.prod(grid.shape))
    img = nib.load(str(maps_path))
    resample = not on_grid(img.shape, img.affine, grid)
    for _, volume in iter_volumes(maps_path):
        if resample:
            volume = resample_volume(volume, img.affine, grid, interpolation)
        flat = np.nan_to_num(volume.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        rows = np.flatnonzero(flat)
        columns.append((rows, flat[rows].astype(np.float64)))
    indptr = np.cumsum([0] + [len(r) for r, _ in columns])
    indices = np.concatenate([r for r, _ in columns]) if columns else np.zeros(0, np.int64)
    data = np.concatenate([v for _, v in columns]) if columns else np.zeros(0)
    return sp.csc_matrix((data, indices, indptr), shape=(n_grid, len(columns)))


def _matrix_key(maps_path: Path, grid: MaskGrid, interpolation: str) -> str:
    stat = maps_path.stat()
    digest = hashlib.sha256(
        json.dumps([str(maps_path.resolve()), stat.st_size, stat.st_mtime_ns, grid.shape, interpolation]).encode()
    )
    digest.update(np.asarray(grid.affine, dtype=np.float64).tobytes())
    digest.update(np.packbits(grid.flat_to_masked >= 0).tobytes())
    return digest.hexdigest()[:24]


def cached_atlas_matrix(
    maps_path: str | os.PathLike,
    grid: MaskGrid,
    interpolation: str = "linear",
    cache_dir: str | os.PathLike | None = None,
) -> sp.csc_matrix:
    """:func:`atlas_matrix`, with a resampled atlas kept on disk for the next process.

    Resampling 512 DiFuMo maps to the grid takes about a minute; every Ray actor of every
    run would repeat it; even maps already on the grid take seconds to inflate from their
    ``.nii.gz``. The result is saved as ``.npz`` under ``cache_dir`` (default
    ``<atlas cache>/resampled``), keyed by the maps file (path, size, mtime), the grid and
    the interpolation, and written atomically.
    """
    maps_path = Path(maps_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else atlas_cache_root() / "resampled"
    path = cache_dir / f"{_matrix_key(maps_path, grid, interpolation)}.npz"
    if path.is_file():
        try:
            return sp.load_npz(path).tocsc()
        except (OSError, ValueError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # unreadable: rebuild it
    matrix = atlas_matrix(maps_path, grid, interpolation)
    with replacing(path) as tmp:
        sp.save_npz(tmp, matrix, compressed=False)
    return matrix


class Projector:
    """One atlas on one grid, with the normal-equation factor computed once.

    Construct once (e.g. in a Ray actor's ``__init__``) and call many times.

    Parameters
    ----------
    atlas : Atlas or path
        The atlas, or a path to a 4-D maps image.
    grid : MaskGrid, optional
        The voxel grid and the masked-voxel numbering used by :meth:`project_voxels` and
        :meth:`project_dense`. Default: NiMARE's 2 mm brain mask (the MKDA grid).
    ridge : float
        Added to the diagonal of ``X'X``.
    atlas_id : str, optional
        Identifier recorded with the results (default: the atlas's, or the file name).
    cache_dir : path, optional
        Where an atlas resampled to the grid is kept (see :func:`cached_atlas_matrix`).

    Attributes
    ----------
    dim : int
        Number of components.
    n_rows : int
        Grid voxels where some component is non-zero.
    samplers : SamplerCache
        Resampling geometry of each input grid met by :meth:`project_image`.
    """

    def __init__(
        self,
        atlas: Atlas | str | os.PathLike,
        grid: MaskGrid | None = None,
        ridge: float = 1e-6,
        atlas_id: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.maps_path = Path(atlas.maps_path if isinstance(atlas, Atlas) else atlas)
        self.atlas_id = atlas_id or (atlas.atlas_id if isinstance(atlas, Atlas) else self.maps_path.name)
        self.grid = grid if grid is not None else brain_mask_grid()
        self.ridge = float(ridge)
        full = cached_atlas_matrix(self.maps_path, self.grid, cache_dir=cache_dir).tocsr()
        self.dim = full.shape[1]
        empty = np.flatnonzero(np.diff(full.tocsc().indptr) == 0)
        if len(empty):
            raise ConfigError(
                f"atlas {self.maps_path}: components {(empty + 1).tolist()[:10]} are empty on the projection grid"
            )
        self.rows = np.flatnonzero(np.diff(full.indptr) > 0)
        self.X = full[self.rows]  # (n_rows, dim) CSR, float64
        row_of_grid = np.full(full.shape[0], -1, dtype=np.int64)
        row_of_grid[self.rows] = np.arange(len(self.rows))
        self._row_of_masked = row_of_grid[np.flatnonzero(self.grid.flat_to_masked >= 0)]
        self.samplers = SamplerCache(self.grid, self.rows)
        try:
            self._factor = normal_factor(self.X, self.ridge)
        except np.linalg.LinAlgError as exc:
            raise ConfigError(
                f"atlas {self.maps_path}: X'X is not positive definite on this grid; use a ridge > 0"
            ) from exc

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def project_voxels(self, index_lists: Sequence[np.ndarray], value: float = 1.0) -> np.ndarray:
        """Project binary maps given as masked-voxel index lists (MKDA studies).

        Parameters
        ----------
        index_lists : sequence of int arrays
            For each map, the masked-voxel indices (of ``grid``) where it equals ``value``;
            it is 0 elsewhere.
        value : float
            Value inside the map.

        Returns
        -------
        (n_maps, dim) float32
            Zero rows for empty maps.
        """
        n = len(index_lists)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self._row_of_masked[np.asarray(ix, dtype=np.int64)] for ix in index_lists]
        rows = [r[r >= 0] for r in rows]
        indptr = np.cumsum([0] + [len(r) for r in rows])
        indices = np.concatenate(rows)
        selector = sp.csr_matrix((np.full(len(indices), float(value)), indices, indptr), shape=(n, self.n_rows))
        return solve_normal(self._factor, (selector @ self.X).toarray())

    def project_image(self, img: str | os.PathLike | nib.Nifti1Image, name: str | None = None) -> np.ndarray:
        """Project an arbitrary 3-D map (checked by :func:`load_map`, resampled to the grid).

        A map off the grid is resampled at the atlas voxels only, with the geometry of its
        grid kept in :attr:`samplers` for the next map on that grid. NaN and inf become 0
        after resampling. Returns a ``(dim,)`` float32 vector.

        Raises
        ------
        InputError
            From :func:`load_map`, naming the map.
        """
        img = load_map(img, name=name)
        data = np.asarray(img.dataobj, dtype=np.float32)
        if on_grid(data.shape, img.affine, self.grid):
            y = np.nan_to_num(data.reshape(-1)[self.rows].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        else:
            y = self.samplers.get(data.shape, img.affine)(data)
        return solve_normal(self._factor, self.X.T @ y)[0]


@lru_cache(maxsize=4)
def _cached(maps_path: str, mtime_ns: int, atlas_id: str, ridge: float) -> Projector:
    return Projector(maps_path, ridge=ridge, atlas_id=atlas_id)


def get_projector(atlas: Atlas, ridge: float = 1e-6) -> Projector:
    """A :class:`Projector` on the brain-mask grid, built once per process per atlas file."""
    path = Path(atlas.maps_path)
    return _cached(str(path.resolve()), path.stat().st_mtime_ns, atlas.atlas_id, float(ridge))
