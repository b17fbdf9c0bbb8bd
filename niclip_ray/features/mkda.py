"""MKDA modelled-activation maps as sparse voxel indices.

A study's MKDA map (Wager et al. 2007, NiMARE's ``MKDAKernel``) is the union of binary
spheres of radius ``r`` mm around its peaks, restricted to a brain mask, with value
``value`` inside. Because it is binary, the map is fully described by the sorted indices
of the masked voxels it covers; we never build the dense volume.

The definition follows NiMARE 0.22 exactly, so the voxels are identical to
``nimare.meta.kernel.MKDAKernel(r, value)``:

* a peak in mm goes to voxel indices through the inverse affine, rounded half to even
  (``numpy.round``);
* a sphere is every integer voxel offset whose length in mm, ``sqrt(sum((offset*zooms)**2))``,
  is at most ``r``;
* sphere voxels outside the grid are dropped, then voxels outside the mask; a peak outside
  the field of view still contributes the part of its sphere that reaches the grid.
"""

from __future__ import annotations

from functools import lru_cache

import nibabel as nib
import numpy as np

from niclip_ray.atlas.mask import MaskGrid


@lru_cache(maxsize=32)
def _offsets(radius: float, zooms: tuple[float, ...]) -> np.ndarray:
    vox = np.asarray(zooms, dtype=np.float64)
    reach = np.floor(radius / vox).astype(int)
    axes = [np.arange(-k, k + 1) for k in reach]
    cube = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(vox))
    length = np.sqrt(((cube * vox) ** 2).sum(axis=1))
    offsets = cube[length <= radius].astype(np.int64)
    offsets.setflags(write=False)
    return offsets


def sphere_offsets(radius: float = 10.0, zooms: tuple[float, ...] = (2.0, 2.0, 2.0)) -> np.ndarray:
    """Integer voxel offsets of a sphere of ``radius`` mm on a grid with voxel sizes ``zooms``.

    Parameters
    ----------
    radius : float
        Sphere radius in mm (MKDA default 10).
    zooms : tuple of float
        Voxel sizes in mm.

    Returns
    -------
    (n_offsets, 3) int64 array
        Offsets whose length in mm is at most ``radius`` (515 for 10 mm on 2 mm voxels).
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"sphere radius must be a non-negative number of mm, got {radius}")
    return _offsets(float(radius), tuple(float(z) for z in zooms))


def peaks_to_ijk(coords_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxel indices of peaks given in mm, rounded half to even as NiMARE does.

    Parameters
    ----------
    coords_mm : (n_peaks, 3) array
        x, y, z in mm; must be finite.
    affine : (4, 4) array
        Voxel-to-mm affine of the grid.

    Returns
    -------
    (n_peaks, 3) int64 array
    """
    coords = np.asarray(coords_mm, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(coords).all():
        raise ValueError("peak coordinates must be finite (found NaN or inf)")
    return np.round(nib.affines.apply_affine(np.linalg.inv(affine), coords)).astype(np.int64)


class _SphereIndex:
    """Per grid and radius: a padded voxel lookup and flat sphere offsets, built once.

    Peaks farther than the sphere's reach from the grid are dropped (their spheres miss
    it). The grid is padded by twice the reach on every side, so that the voxels of any
    remaining sphere are ``flat_peak + flat_offsets`` in padded C order with no bounds
    checks; the padding maps to -1 like voxels outside the mask. A reusable boolean buffer over the
    masked voxels takes the union of a study's spheres, already sorted. The buffer makes
    an index single-threaded, as a Ray actor is.
    """

    def __init__(self, grid: MaskGrid, radius: float):
        offsets = sphere_offsets(radius, tuple(grid.zooms))
        self.reach = np.abs(offsets).max(axis=0) if len(offsets) else np.zeros(3, dtype=np.int64)
        self.shape = np.asarray(grid.shape, dtype=np.int64)
        self.pad = 2 * self.reach
        padded = tuple(int(n) for n in self.shape + 2 * self.pad)
        lookup = np.full(padded, -1, dtype=np.int32)
        inner = tuple(slice(int(p), int(p + n)) for p, n in zip(self.pad, self.shape))
        lookup[inner] = grid.flat_to_masked.reshape(grid.shape)
        self.lookup = lookup.reshape(-1)
        self.strides = np.array([padded[1] * padded[2], padded[2], 1], dtype=np.int64)
        self.flat_offsets = offsets @ self.strides
        self.scratch = np.zeros(grid.n_voxels, dtype=bool)

    def union(self, ijk: np.ndarray) -> np.ndarray:
        reachable = ((ijk >= -self.reach) & (ijk < self.shape + self.reach)).all(axis=1)
        flat = (ijk[reachable] + self.pad) @ self.strides
        masked = self.lookup[(flat[:, None] + self.flat_offsets[None, :]).reshape(-1)]
        self.scratch[masked[masked >= 0]] = True
        voxels = np.flatnonzero(self.scratch)
        self.scratch[voxels] = False
        return voxels


def study_voxels(
    coords_mm: np.ndarray, mask_img: nib.Nifti1Image | MaskGrid, radius: float = 10.0
) -> np.ndarray:
    """Masked-voxel indices covered by the union of a study's peak spheres.

    Parameters
    ----------
    coords_mm : (n_peaks, 3) array
        The study's peaks in mm, in the mask's space (MNI).
    mask_img : nibabel image or MaskGrid
        The mask defining the grid and the masked-voxel numbering (C order, as in
        NiMARE's study-by-masked-voxel matrices). Pass a :class:`MaskGrid` in loops: its
        lookups are built once per radius and reused.
    radius : float
        Sphere radius in mm.

    Returns
    -------
    (n_voxels,) int64 array
        Sorted, unique masked-voxel indices; empty when no sphere reaches the mask.

    Raises
    ------
    ValueError
        When a coordinate is NaN or infinite.
    """
    grid = mask_img if isinstance(mask_img, MaskGrid) else MaskGrid.from_img(mask_img)
    ijk = peaks_to_ijk(coords_mm, grid.affine)
    key = ("sphere_index", float(radius))
    if key not in grid.cache:
        grid.cache[key] = _SphereIndex(grid, radius)
    return grid.cache[key].union(ijk)


def study_map(
    coords_mm: np.ndarray, mask_img: nib.Nifti1Image | MaskGrid, radius: float = 10.0, value: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A study's MKDA map in sparse form: masked-voxel indices and their values.

    Returns
    -------
    indices : (n_voxels,) int64 array
        As :func:`study_voxels`.
    values : (n_voxels,) float32 array
        ``value`` at every covered voxel (overlapping spheres keep the value, not a sum).
    """
    indices = study_voxels(coords_mm, mask_img, radius)
    return indices, np.full(len(indices), value, dtype=np.float32)
