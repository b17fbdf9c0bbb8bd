"""Load brain maps with one checker that names the file in every error.

:func:`load_map` is the single entry point for a map a user hands us (a statistical map to
decode, an image to project). :func:`iter_volumes` streams the volumes of a 4-D atlas one
at a time, so a 512-component atlas never sits in memory whole.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.errors import InputError

#: The MNI152 box (mm) covered by NiMARE's 2 mm grid; a map must overlap it.
MNI_BOX_MM = np.array([[-90.0, -126.0, -72.0], [90.0, 90.0, 108.0]])
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


def grid_box_mm(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding box ``[[min x,y,z], [max x,y,z]]`` in mm of a voxel grid's centres."""
    corners = np.array(np.meshgrid(*[[0, max(int(s) - 1, 0)] for s in shape[:3]], indexing="ij")).reshape(3, -1).T
    world = nib.affines.apply_affine(affine, corners)
    return np.stack([world.min(axis=0), world.max(axis=0)])


def load_map(path: str | os.PathLike | nib.Nifti1Image, name: str | None = None) -> nib.Nifti1Image:
    """Load and check a 3-D brain map.

    Parameters
    ----------
    path : path or nibabel image
        A NIfTI file (``.nii`` or ``.nii.gz``) or an image already in memory.
    name : str, optional
        How to name the input in errors (default: the path).

    Returns
    -------
    nibabel.Nifti1Image
        3-D float32 image with its data loaded. NaN and inf are kept (the projection sets
        them to 0); a 4-D image with a single volume is squeezed to 3-D.

    Raises
    ------
    InputError
        Missing file, unreadable or truncated file, not 3-D, no finite value, or a grid
        that does not overlap the MNI152 box. The message names the input.
    """
    if isinstance(path, nib.spatialimages.SpatialImage):
        label, img = name or "in-memory image", path
    else:
        label = name or str(path)
        if not Path(path).is_file():
            raise InputError(f"map {label}: file not found")
        try:
            img = nib.load(str(path))
        except _READ_ERRORS as exc:
            raise InputError(f"map {label}: not a readable NIfTI image ({type(exc).__name__}: {exc})") from exc
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except _READ_ERRORS as exc:
        raise InputError(f"map {label}: corrupt or truncated data ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"map {label}: expected a 3-D image (or 4-D with one volume), got shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(f"map {label}: every voxel is NaN or infinite")
    box = grid_box_mm(data.shape, img.affine)
    if np.any(box[1] < MNI_BOX_MM[0]) or np.any(box[0] > MNI_BOX_MM[1]):
        raise InputError(
            f"map {label}: its field of view {box.round(1).tolist()} mm does not overlap the MNI152 box; "
            "is it in MNI space?"
        )
    return nib.Nifti1Image(data, img.affine)


def iter_volumes(path: str | os.PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, volume)`` for each 3-D volume of a 4-D NIfTI file, one at a time.

    Gzipped files are read as one sequential stream (no re-decompression per volume);
    plain files are memory-mapped. Volumes are float32, scaled by the header's slope and
    intercept.

    Raises
    ------
    InputError
        When the file is not a readable 4-D NIfTI image.
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
    except _READ_ERRORS as exc:
        raise InputError(f"atlas maps {path}: not a readable NIfTI image ({exc})") from exc
    shape = img.shape
    if len(shape) != 4:
        raise InputError(f"atlas maps {path}: expected a 4-D image (one volume per component), got {shape}")
    slope, inter = img.dataobj.slope, img.dataobj.inter
    try:
        if not str(path).endswith(".gz"):
            for k in range(shape[3]):
                yield k, np.asarray(img.dataobj[..., k], dtype=np.float32)
            return
        dtype = img.get_data_dtype()
        n_bytes = int(np.prod(shape[:3])) * dtype.itemsize
        with gzip.open(path, "rb") as stream:
            stream.seek(int(img.dataobj.offset))
            for k in range(shape[3]):
                raw = stream.read(n_bytes)
                if len(raw) != n_bytes:
                    raise EOFError(f"volume {k} is truncated")
                volume = np.frombuffer(raw, dtype=dtype).reshape(shape[:3], order="F").astype(np.float32)
                if slope is not None and np.isfinite(slope) and slope != 0 and (slope != 1 or inter != 0):
                    volume = volume * np.float32(slope) + np.float32(inter)
                yield k, volume
    except _READ_ERRORS as exc:
        raise InputError(f"atlas maps {path}: corrupt or truncated data ({type(exc).__name__}: {exc})") from exc
