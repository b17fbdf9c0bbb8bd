"""The service's requests, without Ray: maps sized on their header before any data is read, the token's scheme."""

import gzip
import tracemalloc
import zlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from niclip_ray.serve.app import bearer_matches
from niclip_ray.serve.uploads import MAX_SERVE_MAP_BYTES, UploadError, read_nifti


def header_only(shape, dtype) -> bytes:
    """The first bytes of a NIfTI-1 file claiming ``shape`` voxels of ``dtype`` (no data follows)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    return header.binaryblock + b"\x00" * 4


def voxel_bomb() -> bytes:
    """A valid gzip of an 800x800x780 uint8 image: 485 KB that inflate to 500 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block, chunks = b"\x00" * (1 << 24), [compressor.compress(header_only((800, 800, 780), np.uint8))]
    remaining = 800 * 800 * 780
    while remaining:
        chunks.append(compressor.compress(block[:min(remaining, len(block))]))
        remaining -= min(remaining, len(block))
    return b"".join(chunks) + compressor.flush()


def test_a_voxel_bomb_is_refused_from_its_header_without_inflating_its_data():
    body = voxel_bomb()
    assert len(body) < 600_000
    tracemalloc.start()
    try:
        with pytest.raises(UploadError, match=r"800x800x780 voxels of uint8, 2\.3 GiB in memory, over the 512 MiB limit") as info:
            read_nifti(body)  # under the default 64 MiB upload limit and its 8x inflation cap
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413 and "\n" not in info.value.reason
    assert peak < 8 * 1024 * 1024  # the header only: 500 MB were never inflated


def test_a_header_claiming_32767_to_the_4_float64_is_413_not_a_memory_error():
    for body in (header_only((32767,) * 4, np.float64), gzip.compress(header_only((32767,) * 4, np.float64))):
        with pytest.raises(UploadError, match="32767x32767x32767x32767 voxels of float64") as info:
            read_nifti(body)
        assert info.value.status == 413


def test_the_map_limit_is_the_services_setting_and_a_map_under_it_reads():
    data = np.ones((64, 64, 64), np.float32)
    body = gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes())
    assert MAX_SERVE_MAP_BYTES >= 512 * 1024**2
    np.testing.assert_array_equal(np.asarray(read_nifti(body).dataobj), data)
    with pytest.raises(UploadError, match="2.0 MiB in memory, over the 1 MiB limit per map") as info:
        read_nifti(body, max_map_bytes=1024**2)
    assert info.value.status == 413


def test_more_than_one_volume_is_422_before_its_data_is_read():
    with pytest.raises(UploadError, match="3-D") as info:
        read_nifti(gzip.compress(header_only((10, 10, 10, 3), np.float32)))
    assert info.value.status == 422


def test_a_gzip_is_inflated_only_as_far_as_its_header_says():
    img = nib.Nifti1Image(np.arange(1000, dtype=np.float32).reshape(10, 10, 10), np.eye(4))
    trailing = gzip.compress(img.to_bytes() + b"\x00" * (50 * 1024 * 1024))
    np.testing.assert_array_equal(np.asarray(read_nifti(trailing, max_bytes=1024 * 1024).dataobj),
                                  np.asarray(img.dataobj))


@pytest.mark.parametrize("value", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "  Bearer   s3cret "])
def test_the_bearer_scheme_is_case_insensitive(value):
    assert bearer_matches(value, "s3cret")


@pytest.mark.parametrize("value", ["", "s3cret", "Basic s3cret", "Bearer", "Bearer wrong", "Bearers3cret"])
def test_anything_else_is_refused(value):
    assert not bearer_matches(value, "s3cret")


class NaNDecoder:
    """Stands in for a replica's decoder whose scores overflow to NaN on every map."""

    def project(self, img, name=None):
        return np.zeros(4, np.float32)

    def decode_features(self, betas, ids, **options):
        return pd.DataFrame({"map_id": ids, "level": "task", "term": "t", "prob": np.nan, "similarity": np.nan,
                             "likelihood": np.nan, "prior": 0.5})


def test_a_map_whose_scores_are_nan_is_refused_not_answered():
    from niclip_ray.errors import InputError
    from niclip_ray.serve.app import DecodeService

    replica = DecodeService.func_or_class.__new__(DecodeService.func_or_class)
    replica.decoder = NaNDecoder()
    replica.counters = {"batches": 0, "batched_maps": 0, "decode_seconds": 0.0}
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    [result] = replica.decode_many([(img, "posterior")])
    assert isinstance(result, InputError) and "NaN or infinite scores" in str(result)
