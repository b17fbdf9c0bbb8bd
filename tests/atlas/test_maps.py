"""load_map names the file in every error; iter_volumes streams volumes exactly."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from niclip_ray.atlas.maps import iter_volumes, load_map
from niclip_ray.atlas.mask import brain_mask_grid
from niclip_ray.errors import InputError

AFFINE = brain_mask_grid().affine


def save(tmp_path, name, data, affine=AFFINE):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), path)
    return path


def test_good_map_and_single_volume_4d(tmp_path):
    data = np.random.default_rng(0).normal(size=(10, 12, 9)).astype(np.float32)
    img = load_map(save(tmp_path, "ok.nii.gz", data))
    assert img.shape == (10, 12, 9)
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    assert load_map(save(tmp_path, "one.nii.gz", data[..., None])).shape == (10, 12, 9)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"absent\.nii\.gz: file not found"):
        load_map(tmp_path / "absent.nii.gz")


def test_truncated_gzip(tmp_path):
    path = save(tmp_path, "full.nii.gz", np.ones((20, 20, 20)))
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.nii\.gz"):
        load_map(cut)


def test_corrupt_data_behind_a_valid_header(tmp_path):
    path = save(tmp_path, "plain.nii", np.ones((20, 20, 20)))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"plain\.nii: corrupt or truncated"):
        load_map(path)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti file at all"))
    with pytest.raises(InputError, match=r"junk\.nii\.gz"):
        load_map(junk)


def test_multi_volume_4d(tmp_path):
    with pytest.raises(InputError, match=r"four\.nii\.gz: expected a 3-D image.*\(4, 4, 4, 3\)"):
        load_map(save(tmp_path, "four.nii.gz", np.ones((4, 4, 4, 3))))


def test_all_nan(tmp_path):
    data = np.full((5, 5, 5), np.nan)
    data[0, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"nan\.nii\.gz: every voxel is NaN or infinite"):
        load_map(save(tmp_path, "nan.nii.gz", data))


def test_outside_the_mni_box(tmp_path):
    affine = AFFINE.copy()
    affine[:3, 3] = [1000.0, 1000.0, 1000.0]
    with pytest.raises(InputError, match=r"far\.nii\.gz: its field of view"):
        load_map(save(tmp_path, "far.nii.gz", np.ones((5, 5, 5)), affine))


@pytest.mark.parametrize("name", ["maps.nii.gz", "maps.nii"])
def test_iter_volumes_streams_exact_scaled_volumes(tmp_path, name):
    data = np.random.default_rng(1).uniform(0, 1, size=(7, 8, 6, 5))
    img = nib.Nifti1Image(data.astype(np.float32), AFFINE)
    img.set_data_dtype(np.int16)  # forces a scale factor, as many atlases are stored
    nib.save(img, tmp_path / name)
    expected = nib.load(tmp_path / name).get_fdata(dtype=np.float32)
    volumes = list(iter_volumes(tmp_path / name))
    assert [k for k, _ in volumes] == list(range(5))
    for k, volume in volumes:
        np.testing.assert_allclose(volume, expected[..., k], rtol=1e-6, atol=1e-6)


def test_iter_volumes_rejects_3d_and_truncated(tmp_path):
    with pytest.raises(InputError, match="expected a 4-D image"):
        list(iter_volumes(save(tmp_path, "three.nii.gz", np.ones((4, 4, 4)))))
    path = save(tmp_path, "maps.nii.gz", np.ones((20, 20, 20, 4)))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5000]))
    with pytest.raises(InputError, match=r"cut\.nii\.gz: corrupt or truncated"):
        list(iter_volumes(cut))
