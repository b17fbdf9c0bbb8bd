"""Atlas coefficients -> brain maps on the MNI 2 mm grid, as NIfTI and PNG.

A map is ``sum_k coefficient_k * component_k``, with the DiFuMo components resampled to
NiMARE's 2 mm brain-mask grid (91x109x91, the grid of the studies' MKDA maps) and set
to zero outside the mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.sparse as sp

from niclip_ray.atlas.difumo import Atlas
from niclip_ray.atlas.mask import MaskGrid, brain_mask_grid
from niclip_ray.atomic import replacing


class MapBuilder:
    """The atlas as a ``(n_mask_voxels, dim)`` matrix, built once, turning coefficients into maps.

    Parameters
    ----------
    atlas : Atlas
    grid : MaskGrid, optional
        Default: NiMARE's 2 mm brain mask.
    """

    def __init__(self, atlas: Atlas, grid: MaskGrid | None = None):
        from niclip_ray.atlas.projection import cached_atlas_matrix

        self.grid = grid if grid is not None else brain_mask_grid()
        full = cached_atlas_matrix(atlas.maps_path, self.grid).tocsr()
        self.components: sp.csr_matrix = full[np.flatnonzero(self.grid.flat_to_masked >= 0)]
        self.dim = self.components.shape[1]

    def masked(self, coefficients: np.ndarray) -> np.ndarray:
        """``(n, n_mask_voxels)`` float32 maps of ``(n, dim)`` coefficients (masked voxels, C order)."""
        coefficients = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        if coefficients.shape[1] != self.dim:
            raise ValueError(f"{coefficients.shape[1]} coefficients for an atlas of {self.dim} components")
        return np.asarray(self.components @ coefficients.T, dtype=np.float32).T

    def image(self, coefficients: np.ndarray) -> nib.Nifti1Image:
        """One map ``(dim,)`` as a 3-D float32 image with the mask's shape and affine."""
        img = nib.Nifti1Image(self.grid.unmask(self.masked(coefficients)[0]), self.grid.affine)
        img.header.set_xyzt_units("mm")
        return img


def save_map(img: nib.Nifti1Image, path: str | os.PathLike, title: str) -> tuple[Path, Path]:
    """Write ``img`` to ``path`` (``.nii.gz``) and its picture beside it (``.png``).

    Returns
    -------
    (nifti path, png path)
    """
    from niclip_ray.report.figures import plot_map

    path = Path(path)
    with replacing(path) as tmp:
        nib.save(img, tmp)
    png = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".png")
    plot_map(img, title, png)
    return path, png
