"""Resampling maps onto the projection grid: whole volumes, or only the atlas voxels.

Two paths, both as nilearn's ``resample_img`` resamples (no clipping):

- :func:`resample_volume` puts a whole volume on a :class:`~niclip_ray.atlas.mask.MaskGrid`
  with nilearn; the atlas maps take this path once, with linear interpolation, when they
  are not on the grid (:func:`niclip_ray.atlas.projection.atlas_matrix`).
- :class:`RowSampler` evaluates the map only at the grid voxels that some atlas component
  covers (a projector's ``rows``), with the geometry computed once per source grid
  (:class:`SamplerCache`). Decoding a collection resamples thousands of maps that share
  one or a few grids, so this is the path of every map to project
  (:meth:`Projector.project_image <niclip_ray.atlas.projection.Projector.project_image>`).
  It evaluates the same cubic spline as nilearn's continuous interpolation
  (``scipy.ndimage``, order 3, constant 0 outside, spline prefilter); non-finite voxels
  are handled as ``resample_img`` does (extrapolated for the interpolation, then the
  nearest-neighbour resampled non-finite mask is set to 0). It equals resampling the
  whole volume with nilearn and keeping those voxels, up to float32 rounding (tested).
"""

from __future__ import annotations

from collections import OrderedDict

import nibabel as nib
import numpy as np
from scipy import ndimage

from niclip_ray.atlas.mask import MaskGrid


def on_grid(shape: tuple[int, ...], affine: np.ndarray, grid: MaskGrid) -> bool:
    """Whether an image of ``shape`` and ``affine`` already lies on ``grid`` (affine within 1e-4 mm)."""
    return tuple(shape[:3]) == grid.shape and np.allclose(affine, grid.affine, atol=1e-4)


def resample_volume(volume: np.ndarray, affine: np.ndarray, grid: MaskGrid, interpolation: str) -> np.ndarray:
    """A 3-D ``volume`` resampled onto ``grid`` by nilearn (``linear``, ``continuous``, ...), float32."""
    from nilearn.image import resample_img

    img = nib.Nifti1Image(volume, affine)
    out = resample_img(
        img,
        target_affine=grid.affine,
        target_shape=grid.shape,
        interpolation=interpolation,
        clip=False,
        copy_header=True,
    )
    return np.asarray(out.dataobj, dtype=np.float32)


class RowSampler:
    """Resample maps from one source grid onto some voxels of a target grid.

    Parameters
    ----------
    shape : tuple of int
        Source grid shape (3-D).
    affine : (4, 4) array
        Source voxel-to-mm affine.
    grid : MaskGrid
        Target grid.
    rows : (n_rows,) int array
        C-order linear indices of the target voxels to evaluate.
    """

    def __init__(self, shape: tuple[int, ...], affine: np.ndarray, grid: MaskGrid, rows: np.ndarray) -> None:
        self.shape = tuple(int(s) for s in shape[:3])
        target = np.vstack(np.unravel_index(np.asarray(rows), grid.shape)).astype(np.float64)
        to_source = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(grid.affine, dtype=np.float64)
        self.coords = to_source[:3, :3] @ target + to_source[:3, 3:4]  # (3, n_rows) source voxel coordinates

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """Values ``(n_rows,)`` float64 of a ``shape`` volume at the rows (0 where undefined)."""
        from nilearn.masking import extrapolate_out_mask

        data = np.asarray(data, dtype=np.float32)
        if data.shape != self.shape:
            raise ValueError(f"expected a volume of shape {self.shape}, got {data.shape}")
        non_finite = ~np.isfinite(data)
        if non_finite.any():
            data = extrapolate_out_mask(data, ~non_finite, iterations=2)[0]
        values = ndimage.map_coordinates(data, self.coords, output=np.float32, order=3, mode="constant", cval=0.0)
        if non_finite.any():
            undefined = ndimage.map_coordinates(non_finite, self.coords, order=0).astype(bool)
            values[undefined] = 0.0
        return np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


class SamplerCache:
    """The :class:`RowSampler` of each source grid met so far (least recently used dropped)."""

    def __init__(self, grid: MaskGrid, rows: np.ndarray, max_grids: int = 16) -> None:
        self.grid, self.rows, self.max_grids = grid, rows, max_grids
        self._samplers: OrderedDict[tuple, RowSampler] = OrderedDict()

    def get(self, shape: tuple[int, ...], affine: np.ndarray) -> RowSampler:
        """The sampler for a source grid, built on first use."""
        key = (tuple(int(s) for s in shape[:3]), np.round(np.asarray(affine, dtype=np.float64), 6).tobytes())
        sampler = self._samplers.pop(key, None)
        if sampler is None:
            sampler = RowSampler(shape, affine, self.grid, self.rows)
        self._samplers[key] = sampler
        while len(self._samplers) > self.max_grids:
            self._samplers.popitem(last=False)
        return sampler

    def __len__(self) -> int:
        return len(self._samplers)
