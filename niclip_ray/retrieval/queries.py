"""Checks of what a user asks: a text query (string or file) and a brain map to search with."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.atlas.maps import load_map
from niclip_ray.atlas.mask import brain_mask_grid
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text import TextError, coerce_text

#: Non-zero voxels of a query map looked up in the brain mask (a regular subsample beyond).
MAX_CHECKED_VOXELS = 200_000


def query_text(value: str | bytes) -> str:
    """A text query as a clean string.

    Raises
    ------
    ParameterError
        ``query`` empty, blank or not valid Unicode.
    """
    try:
        return coerce_text(value).strip()
    except TextError as exc:
        raise ParameterError("query", f"is unusable: {exc}") from None


def read_query_file(path: str | os.PathLike) -> str:
    """The text of a query file (UTF-8).

    Raises
    ------
    ParameterError
        ``query_file`` missing, not UTF-8, or empty.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterError("query_file", f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        return coerce_text(raw).strip()
    except TextError as exc:
        raise ParameterError("query_file", f"{path} is unusable: {exc}") from None


def check_in_brain(img: str | os.PathLike | nib.Nifti1Image, name: str) -> nib.Nifti1Image:
    """Load a query map (:func:`~niclip_ray.atlas.maps.load_map`) and refuse one off the brain.

    A map is off the brain when none of its non-zero voxels falls inside NiMARE's 2 mm
    MNI brain mask.

    Raises
    ------
    InputError
        From ``load_map`` (unreadable, not 3-D, all NaN, outside MNI space), or off the brain.
    """
    img = load_map(img, name=name)
    data = np.asarray(img.dataobj, dtype=np.float32)
    ijk = np.argwhere(np.isfinite(data) & (data != 0))
    if not len(ijk):
        raise InputError(f"map {name}: every voxel is zero; nothing to search with")
    step = max(1, len(ijk) // MAX_CHECKED_VOXELS)
    grid = brain_mask_grid()
    world = nib.affines.apply_affine(img.affine, ijk[::step])
    mask_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(grid.affine), world)).astype(np.int64)
    within = ((mask_ijk >= 0) & (mask_ijk < np.array(grid.shape))).all(axis=1)
    flat = np.ravel_multi_index(mask_ijk[within].T, grid.shape)
    if not (grid.flat_to_masked[flat] >= 0).any():
        raise InputError(
            f"map {name}: off the brain (none of its {len(ijk)} non-zero voxels is inside the MNI brain mask)"
        )
    return img
