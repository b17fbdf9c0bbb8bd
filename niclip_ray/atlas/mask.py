"""The 2 mm MNI152 brain mask that NiMARE's coordinate kernels use, and its voxel lookup."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.errors import ConfigError

#: File shipped inside the nimare wheel (``get_template("mni152_2mm", mask="brain")``).
MASK_FILE = "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz"


def mask_path() -> Path:
    """Path of NiMARE's 2 mm MNI152NLin6Asym brain mask (91x109x91).

    Found without importing nimare, whose import takes seconds.
    """
    spec = importlib.util.find_spec("nimare")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("nimare is not installed; it ships the MNI152 brain mask")
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "templates" / MASK_FILE


@lru_cache(maxsize=1)
def _mask_arrays() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(mask_path())
    data = np.asarray(img.dataobj)
    return (data > 0) & np.isfinite(data), img.affine.copy()


def load_brain_mask() -> nib.Nifti1Image:
    """NiMARE's 2 mm MNI152 brain mask as a boolean-valued (uint8) image.

    Returns
    -------
    nibabel.Nifti1Image
        91x109x91, 2 mm isotropic, the grid on which ``MKDAKernel`` builds its maps.
        Voxels with a positive value in the shipped file are 1, the rest 0.
    """
    data, affine = _mask_arrays()
    return nib.Nifti1Image(data.astype(np.uint8), affine)


@dataclass(frozen=True)
class MaskGrid:
    """A mask image reduced to what voxel lookups need.

    Attributes
    ----------
    shape : tuple of int
        Grid shape (3-D).
    affine : (4, 4) float64 array
        Voxel-to-mm affine.
    zooms : (3,) float64 array
        Voxel sizes in mm.
    flat_to_masked : (prod(shape),) int32 array
        Masked-voxel index of every grid voxel in C order, -1 outside the mask.
        Masked voxels are numbered in C order, as NiMARE and nilearn number them.
    n_voxels : int
        Voxels in the mask.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    zooms: np.ndarray
    flat_to_masked: np.ndarray
    n_voxels: int
    #: Lookups derived from the grid (e.g. per sphere radius), built on first use.
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_img(cls, mask_img: nib.Nifti1Image) -> MaskGrid:
        """Build the lookup from a 3-D mask image (non-zero, finite voxels are in)."""
        data = np.asarray(mask_img.dataobj)
        if data.ndim != 3:
            raise ValueError(f"a mask must be 3-D, got shape {data.shape}")
        inside = ((data != 0) & np.isfinite(data)).reshape(-1)
        lookup = np.full(inside.size, -1, dtype=np.int32)
        lookup[inside] = np.arange(int(inside.sum()), dtype=np.int32)
        zooms = np.asarray(mask_img.header.get_zooms()[:3], dtype=np.float64)
        shape = tuple(int(s) for s in data.shape)
        return cls(shape, np.asarray(mask_img.affine, float), zooms, lookup, int(inside.sum()))

    def mask_data(self) -> np.ndarray:
        """The mask as a boolean 3-D array."""
        return (self.flat_to_masked >= 0).reshape(self.shape)

    def unmask(self, values: np.ndarray) -> np.ndarray:
        """Put masked-voxel values ``(n_voxels,)`` back on the 3-D grid (zero outside)."""
        volume = np.zeros(int(np.prod(self.shape)), dtype=np.asarray(values).dtype)
        volume[self.flat_to_masked >= 0] = values
        return volume.reshape(self.shape)


@lru_cache(maxsize=1)
def brain_mask_grid() -> MaskGrid:
    """The :class:`MaskGrid` of :func:`load_brain_mask`, built once per process."""
    return MaskGrid.from_img(load_brain_mask())
