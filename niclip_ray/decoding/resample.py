"""Resample maps onto the projector's rows only, with the geometry cached per input grid.

:meth:`Projector.project_image <niclip_ray.atlas.projection.Projector.project_image>`
resamples every map onto the whole mask grid with nilearn, then keeps the voxels that
some atlas component covers (its ``rows``). Decoding a collection resamples thousands of
maps that share one or a few grids, so :class:`RowSampler` computes, once per source
grid, the source-voxel coordinates of those rows, and then evaluates the same cubic
spline (``scipy.ndimage``, order 3, constant 0 outside, spline prefilter) at those points
only. Non-finite voxels are handled as nilearn's ``resample_img`` does (extrapolated for
the interpolation, then the nearest-neighbour resampled non-finite mask is set to 0), and
no clipping is applied, as in ``Projector.project_image``. The result equals
``project_image`` up to float32 rounding (tested).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from scipy import ndimage


class RowSampler:
    """Resample maps from one source grid onto a projector's rows.

    Parameters
    ----------
    shape : tuple of int
        Source grid shape (3-D).
    affine : (4, 4) array
        Source voxel-to-mm affine.
    grid_shape : tuple of int
        Target (mask) grid shape.
    grid_affine : (4, 4) array
        Target voxel-to-mm affine.
    rows : (n_rows,) int array
        C-order linear indices of the target voxels to evaluate.
    """

    def __init__(self, shape, affine, grid_shape, grid_affine, rows: np.ndarray) -> None:
        self.shape = tuple(int(s) for s in shape[:3])
        target = np.vstack(np.unravel_index(np.asarray(rows), tuple(grid_shape))).astype(np.float64)
        to_source = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(grid_affine, dtype=np.float64)
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

    def __init__(self, grid_shape, grid_affine, rows: np.ndarray, max_grids: int = 16) -> None:
        self.grid_shape, self.grid_affine, self.rows = tuple(grid_shape), np.asarray(grid_affine), rows
        self.max_grids = max_grids
        self._samplers: OrderedDict[tuple, RowSampler] = OrderedDict()

    def get(self, shape, affine) -> RowSampler:
        """The sampler for a source grid, built on first use."""
        key = (tuple(int(s) for s in shape[:3]), np.round(np.asarray(affine, dtype=np.float64), 6).tobytes())
        sampler = self._samplers.pop(key, None)
        if sampler is None:
            sampler = RowSampler(shape, affine, self.grid_shape, self.grid_affine, self.rows)
        self._samplers[key] = sampler
        while len(self._samplers) > self.max_grids:
            self._samplers.popitem(last=False)
        return sampler

    def __len__(self) -> int:
        return len(self._samplers)
