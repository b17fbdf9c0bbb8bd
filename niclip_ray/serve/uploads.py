"""Request bodies -> NIfTI images, read from memory only (an upload never names a file on disk).

A body is a single-file NIfTI-1 or NIfTI-2 image (``.nii``), or its gzip (``.nii.gz``),
sent raw or as the one file of a multipart upload. Every problem is an
:class:`UploadError` with the HTTP status to answer and a one-line reason.
"""

from __future__ import annotations

import zlib

import nibabel as nib
import numpy as np

#: Default limit of a request body, in bytes.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: A gzipped body may inflate to at most this many times the upload limit.
INFLATE_FACTOR = 8
_GZIP_MAGIC = b"\x1f\x8b"
_SINGLE_FILE_MAGIC = {b"n+1\x00": (344, nib.Nifti1Image), b"n+2\x00": (4, nib.Nifti2Image)}


class UploadError(Exception):
    """A request the service refuses: ``status`` (HTTP code) and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = int(status)
        self.reason = reason


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (413) one that inflates past ``limit`` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise UploadError(400, f"the body is not valid gzip ({exc})") from exc
    if len(raw) > limit or inflater.unconsumed_tail:
        raise UploadError(413, f"the image inflates to more than {limit} bytes")
    return raw


def read_nifti(body: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> nib.spatialimages.SpatialImage:
    """Parse a request body into a nibabel image, without touching the disk.

    Raises
    ------
    UploadError
        400 for an empty body, bad gzip or anything that is not a single-file NIfTI image;
        413 for a body over ``max_bytes`` or a gzip that inflates past ``INFLATE_FACTOR``
        times it.
    """
    if not body:
        raise UploadError(400, "the request has no body: send a NIfTI image (.nii or .nii.gz)")
    if len(body) > max_bytes:
        raise UploadError(413, f"the upload is larger than the limit of {max_bytes} bytes")
    raw = gunzip(body, max_bytes * INFLATE_FACTOR) if body[:2] == _GZIP_MAGIC else body
    for magic, (offset, image_class) in _SINGLE_FILE_MAGIC.items():
        if raw[offset:offset + 4] == magic:
            try:
                return image_class.from_bytes(raw)
            except Exception as exc:  # nibabel raises many types on a damaged header
                raise UploadError(400, f"the body is a damaged NIfTI image ({type(exc).__name__}: {exc})") from exc
    raise UploadError(400, "the body is not a single-file NIfTI image (.nii or .nii.gz)")


def map_checks(img: nib.spatialimages.SpatialImage, resampled: bool) -> dict:
    """What the service reports about an uploaded map: its grid, whether it was resampled, non-finite voxels."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    return {
        "shape": [int(n) for n in data.shape],
        "voxel_mm": [round(float(z), 4) for z in img.header.get_zooms()[:3]],
        "resampled": bool(resampled),
        "nan_count": int(np.count_nonzero(~np.isfinite(data))),
    }
