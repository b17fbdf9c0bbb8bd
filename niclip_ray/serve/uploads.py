"""Request bodies -> NIfTI images, read from memory only (an upload never names a file on disk).

A body is a single-file NIfTI-1 or NIfTI-2 image (``.nii``), or its gzip (``.nii.gz``),
sent raw or as the one file of a multipart upload. Every problem is an
:class:`UploadError` with the HTTP status to answer and a one-line reason.
"""

from __future__ import annotations

import io
import math
import zlib

import nibabel as nib
import numpy as np

from niclip_ray.decoding.map_files import oversize

#: Default limit of a request body, in bytes.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: A gzipped body may inflate to at most this many times the upload limit.
INFLATE_FACTOR = 8
#: Default limit of the memory a map takes, its voxels as stored plus their float32 copy,
#: checked on the header before any data is inflated or read (a 0.5 mm MNI map fits).
MAX_SERVE_MAP_BYTES = 512 * 1024**2
#: Bytes enough for either header: NIfTI-2's 540 and the extension flag.
_HEADER_BYTES = 544
_GZIP_MAGIC = b"\x1f\x8b"
_SINGLE_FILE_MAGIC = {b"n+1\x00": (344, nib.Nifti1Image), b"n+2\x00": (4, nib.Nifti2Image)}


class UploadError(Exception):
    """A request the service refuses: ``status`` (HTTP code) and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = int(status)
        self.reason = reason


def inflate(body: bytes, size: int) -> bytes:
    """The first ``size`` bytes a gzip body inflates to (fewer when it is shorter); the rest is never inflated."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, size)
    except zlib.error as exc:
        raise UploadError(400, f"the body is not valid gzip ({exc})") from exc


def read_header(head: bytes) -> tuple[type, nib.Nifti1Header]:
    """The image class and header of a single-file NIfTI whose first bytes are ``head``."""
    for magic, (offset, image_class) in _SINGLE_FILE_MAGIC.items():
        if head[offset:offset + 4] == magic:
            try:
                header_class = image_class.header_class
                block = head[:header_class.template_dtype.itemsize]  # the header alone: no extension read
                return image_class, header_class.from_fileobj(io.BytesIO(block))
            except Exception as exc:  # nibabel raises many types on a damaged header
                raise UploadError(400, f"the body is a damaged NIfTI header ({type(exc).__name__}: {exc})") from exc
    raise UploadError(400, "the body is not a single-file NIfTI image (.nii or .nii.gz)")


def check_header(header: nib.Nifti1Header, max_map_bytes: int) -> int:
    """Refuse a header whose map would not fit in memory (413) or is not one volume (422).

    Returns
    -------
    int
        The bytes of the file the header describes: its data offset and its voxels.
    """
    try:
        shape, dtype = tuple(int(n) for n in header.get_data_shape()), header.get_data_dtype()
        offset = int(header.get_data_offset())
    except Exception as exc:  # an unknown datatype code, say
        raise UploadError(400, f"the body is a damaged NIfTI header ({type(exc).__name__}: {exc})") from exc
    problem = oversize(shape, dtype, max_map_bytes)
    if problem:
        raise UploadError(413, f"the uploaded map: {problem}")
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise UploadError(422, f"expected a 3-D image (or 4-D with one volume), got shape {shape}")
    return offset + math.prod(shape) * dtype.itemsize


def read_nifti(body: bytes, max_bytes: int = MAX_UPLOAD_BYTES,
               max_map_bytes: int = MAX_SERVE_MAP_BYTES) -> nib.spatialimages.SpatialImage:
    """Parse a request body into a nibabel image, without touching the disk.

    The header is read (and inflated) first; the data only once the header passes.

    Raises
    ------
    UploadError
        400 for an empty body, bad gzip or anything that is not a single-file NIfTI image;
        413 for a body over ``max_bytes``, a map whose voxels and their float32 copy would
        take more than ``max_map_bytes`` (see
        :func:`~niclip_ray.decoding.map_files.oversize`), or a gzip whose image is larger
        than ``INFLATE_FACTOR`` times ``max_bytes``; 422 for a map of more than one volume.
    """
    if not body:
        raise UploadError(400, "the request has no body: send a NIfTI image (.nii or .nii.gz)")
    if len(body) > max_bytes:
        raise UploadError(413, f"the upload is larger than the limit of {max_bytes} bytes")
    gzipped = body[:2] == _GZIP_MAGIC
    image_class, header = read_header(inflate(body, _HEADER_BYTES) if gzipped else body[:_HEADER_BYTES])
    size = check_header(header, max_map_bytes)
    if gzipped:
        if size > max_bytes * INFLATE_FACTOR:
            raise UploadError(413, f"the image inflates to {size} bytes, more than the limit of "
                                   f"{max_bytes * INFLATE_FACTOR} bytes for a gzip upload")
        body = inflate(body, size)  # bytes past the data are never inflated (nibabel ignores them)
    try:
        return image_class.from_bytes(body)
    except Exception as exc:  # nibabel raises many types on a damaged header
        raise UploadError(400, f"the body is a damaged NIfTI image ({type(exc).__name__}: {exc})") from exc


def map_checks(img: nib.spatialimages.SpatialImage, resampled: bool) -> dict:
    """What the service reports about an uploaded map: its grid, whether it was resampled, non-finite voxels."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    return {
        "shape": [int(n) for n in data.shape],
        "voxel_mm": [round(float(z), 4) for z in img.header.get_zooms()[:3]],
        "resampled": bool(resampled),
        "nan_count": int(np.count_nonzero(~np.isfinite(data))),
    }
