"""The stand-in atlas: nilearn's layout, determinism, shape, and atlas discovery."""

import shutil

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import fetch_atlas_difumo

from niclip_ray.atlas.cache import STANDIN_MARKER, find_difumo
from niclip_ray.atlas.difumo import build_standin, load_atlas, real_label_table, standin_maps
from niclip_ray.atlas.mask import brain_mask_grid
from niclip_ray.errors import ConfigError


def test_standin_loads_unchanged_through_nilearn(standin64):
    bunch = fetch_atlas_difumo(dimension=64, resolution_mm=2, data_dir=str(standin64.data_dir))
    img = nib.load(bunch.maps)
    assert img.shape == (91, 109, 91, 64)
    np.testing.assert_allclose(img.affine, brain_mask_grid().affine)
    expected = real_label_table(64)
    assert expected is not None, "templateflow ships the DiFuMo label tables"
    assert list(bunch.labels.columns) == [c.lower() for c in expected.columns]
    assert bunch.labels["difumo_names"].tolist() == expected["Difumo_names"].tolist()
    assert STANDIN_MARKER in (standin64.data_dir / "difumo_atlases" / "README.md").read_text()


def test_standin_components_are_nonnegative_sparse_overlapping_and_in_the_mask(standin64):
    data = np.asarray(nib.load(standin64.maps_path).dataobj)
    assert data.min() == 0.0 and data.max() <= 1.0
    support = data > 0
    assert support.any(axis=(0, 1, 2)).all(), "every component has voxels"
    assert support.mean() < 0.05, "components are sparse"
    assert (support.sum(axis=3) >= 2).any(), "components overlap"
    outside = ~brain_mask_grid().mask_data()
    assert not support[outside].any(), "nothing outside the brain mask"


def test_standin_is_deterministic(standin64, tmp_path):
    fresh = build_standin(tmp_path, 64, seed=0)
    np.testing.assert_array_equal(np.asarray(nib.load(fresh).dataobj), np.asarray(nib.load(standin64.maps_path).dataobj))
    inside = np.flatnonzero(brain_mask_grid().flat_to_masked >= 0)
    seed0 = np.flatnonzero(np.asarray(nib.load(standin64.maps_path).dataobj)[..., 0].reshape(-1))
    seed1, _ = standin_maps(64, seed=1)
    assert not np.array_equal(inside[seed1[0]], seed0), "another seed gives other components"


def test_atlas_records_what_it_is(standin64):
    assert standin64.standin and standin64.dim == 64
    assert standin64.atlas_id == "difumo64-2mm-standin-seed0"
    assert len(standin64.labels) == 64


def test_a_real_cache_is_preferred_and_never_overwritten(standin64, tmp_path):
    real = tmp_path / "difumo_atlases"
    shutil.copytree(standin64.data_dir / "difumo_atlases" / "64", real / "64")
    (real / "README.md").write_text("DiFuMo atlases (downloaded)\n")
    atlas = load_atlas(64, data_dir=tmp_path)
    assert not atlas.standin and atlas.atlas_id == "difumo64-2mm"
    with pytest.raises(ConfigError, match="real DiFuMo"):
        build_standin(tmp_path, 128)
    assert [c.atlas_id for c in find_difumo([tmp_path])] == ["difumo64-2mm"]


def test_missing_atlas_without_standin_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no DiFuMo 64 atlas"):
        load_atlas(64, data_dir=tmp_path, allow_standin=False)
    with pytest.raises(ConfigError, match="dimension"):
        load_atlas(100, data_dir=tmp_path)


def test_no_standin_refuses_a_standin_directory(standin64):
    with pytest.raises(ConfigError, match=r"only a stand-in"):
        load_atlas(64, data_dir=standin64.data_dir, allow_standin=False)


def test_another_seed_needs_another_directory(standin64):
    with pytest.raises(ConfigError, match="seed 0"):
        build_standin(standin64.data_dir, 64, seed=3)


def test_a_test_atlas_has_an_id_of_its_own(tmp_path):
    from niclip_ray._testing import toy_atlas

    toy_atlas(tmp_path, dim=64)
    (found,) = find_difumo([tmp_path])
    assert found.standin and found.atlas_id == "toy-difumo64-8mm-standin-seed0"
