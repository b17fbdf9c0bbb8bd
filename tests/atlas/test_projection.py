"""Least-squares projection: against numpy's lstsq, nilearn's NiftiMapsMasker, and itself (sparse vs dense)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_img, resample_to_img
from nilearn.maskers import NiftiMapsMasker, NiftiMasker
from nimare.meta.kernel import MKDAKernel

from niclip_ray.atlas.mask import brain_mask_grid, load_brain_mask
from niclip_ray.atlas.projection import Projector, atlas_matrix, get_projector, project
from niclip_ray.features.mkda import study_voxels

PEAKS = pd.DataFrame(
    {
        "id": ["s1", "s1", "s1", "s2", "s3", "s3"],
        "x": [-42.0, 38.0, 3.0, -30.0, 10.0, 11.0],
        "y": [20.0, -60.0, 26.0, -90.0, 4.0, -2.0],
        "z": [-11.0, 44.0, 37.0, 0.0, 50.0, 62.0],
    }
)


@pytest.fixture(scope="module")
def projector(standin64):
    return get_projector(standin64)


@pytest.fixture(scope="module")
def design(standin64):
    """The atlas as a dense float64 matrix on the grid voxels where it is non-zero, and those voxels.

    Voxels where every component is zero add nothing to a least-squares fit, so leaving
    them out keeps numpy's lstsq fast without changing its solution.
    """
    data = np.asarray(nib.load(standin64.maps_path).dataobj, dtype=np.float64)
    flat = data.reshape(-1, data.shape[-1])
    rows = np.flatnonzero(np.abs(flat).sum(axis=1) > 0)
    return flat[rows], rows


def lstsq(design, volumes):
    """numpy least squares of each (flattened, C order) volume on the atlas."""
    matrix, rows = design
    y = np.stack([np.nan_to_num(np.asarray(v, dtype=np.float64)).reshape(-1)[rows] for v in volumes], axis=1)
    return np.linalg.lstsq(matrix, y, rcond=None)[0].T


def assert_close(ours, reference):
    scale = np.abs(reference).max()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4 * scale)


def test_dense_image_matches_lstsq(projector, design):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=brain_mask_grid().shape).astype(np.float32)
    volume[0, 0, 0] = np.nan  # NaN becomes 0
    beta = projector.project_image(nib.Nifti1Image(volume, brain_mask_grid().affine))
    assert beta.dtype == np.float32 and beta.shape == (64,)
    assert_close(beta, lstsq(design, [volume])[0])


def test_project_is_least_squares(design):
    matrix, _ = design
    values = np.random.default_rng(1).normal(size=(3, len(matrix)))
    expected = np.linalg.lstsq(matrix, values.T, rcond=None)[0].T
    beta = project(values, sp.csr_matrix(matrix))
    assert beta.dtype == np.float32 and beta.shape == (3, 64)
    assert_close(beta, expected)
    assert_close(project(values[0], matrix), expected[:1])  # one map, dense atlas


def test_mkda_sparse_path_matches_lstsq_and_dense_path(projector, design):
    grid = brain_mask_grid()
    voxels = [study_voxels(p[["x", "y", "z"]].to_numpy(), grid) for _, p in PEAKS.groupby("id")]
    sparse = projector.project_voxels(voxels, value=1.0)
    masked = np.zeros((len(voxels), grid.n_voxels), dtype=np.float32)
    for row, idx in enumerate(voxels):
        masked[row, idx] = 1.0
    full = np.stack([grid.unmask(m).ravel() for m in masked])  # the pure projection on the whole grid
    assert_close(sparse, project(full, atlas_matrix(projector.maps_path, grid)))
    assert_close(sparse, lstsq(design, [grid.unmask(m) for m in masked]))
    assert_close(projector.project_voxels(voxels, value=2.5), 2.5 * sparse)


def test_mkda_matches_nimare_images_through_nifti_maps_masker(projector, standin64):
    grid = brain_mask_grid()
    images = MKDAKernel(r=10, value=1).transform(
        PEAKS, masker=NiftiMasker(load_brain_mask()).fit(), return_type="image"
    )
    reference = NiftiMapsMasker(nib.load(standin64.maps_path), standardize=False).fit_transform(images)
    voxels = [study_voxels(p[["x", "y", "z"]].to_numpy(), grid) for _, p in PEAKS.groupby("id")]
    assert_close(projector.project_voxels(voxels), reference)


def test_map_on_another_grid_is_resampled_like_nilearn(projector, design):
    motor = load_sample_motor_activation_image()  # real NeuroVault map, 3 mm grid
    resampled = resample_to_img(motor, load_brain_mask(), interpolation="continuous", copy_header=True)
    assert_close(projector.project_image(motor), lstsq(design, [resampled.get_fdata()])[0])


@pytest.mark.filterwarnings("ignore:NaNs or infinite values:RuntimeWarning")  # nilearn, on the NaN case
def test_maps_resampled_at_the_atlas_voxels_equal_nilearn_on_the_whole_grid(standin64, design):
    """Off-grid maps (with NaN and inf) resampled at the atlas voxels only, the geometry cached
    per source grid, get the coefficients of nilearn's whole-grid resampling; on-grid maps
    are not resampled."""
    matrix, rows = design
    projector = Projector(standin64)
    grid = projector.grid
    img = nib.load(load_sample_motor_activation_image())
    data = np.asarray(img.dataobj, dtype=np.float32)
    holes = data.copy()
    holes[20:30, 25:40, 10:30] = np.nan
    holes[0, 0, 0] = np.inf
    rng = np.random.default_rng(0)
    on_grid = nib.Nifti1Image(rng.standard_normal(grid.shape).astype(np.float32), grid.affine)
    for case in [img, nib.Nifti1Image(holes, img.affine), nib.Nifti1Image(2 * data, img.affine), on_grid]:
        whole = resample_img(case, target_affine=grid.affine, target_shape=grid.shape, interpolation="continuous",
                             clip=False, copy_header=True, force_resample=True)
        expected = project(np.nan_to_num(whole.get_fdata()).reshape(-1)[rows], matrix)[0]
        np.testing.assert_allclose(projector.project_image(case), expected, rtol=1e-6, atol=1e-6)
    assert len(projector.samplers) == 1  # one source grid met (the on-grid map needs none)


def test_atlas_on_another_grid_matches_nifti_maps_masker(tmp_path):
    """Maps on a 3 mm grid are resampled to the 2 mm grid as NiftiMapsMasker resamples them."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-78.0, -112.0, -70.0]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (53, 64, 57)], indexing="ij"), axis=-1)
    xyz = ijk * 3.0 + affine[:3, 3]
    centres = np.random.default_rng(1).uniform([-50, -80, -30], [50, 40, 60], size=(8, 3))
    maps = np.stack([np.exp(-((xyz - c) ** 2).sum(-1) / (2 * 15.0**2)) for c in centres], axis=-1)
    maps[maps < 0.05] = 0
    path = tmp_path / "maps_3mm.nii.gz"
    nib.save(nib.Nifti1Image(maps.astype(np.float32), affine), path)
    grid = brain_mask_grid()
    volume = np.zeros(grid.shape, dtype=np.float32)
    volume[30:50, 40:60, 40:55] = 1.0
    volume *= grid.mask_data()
    image = nib.Nifti1Image(volume, grid.affine)
    reference = np.ravel(NiftiMapsMasker(str(path), standardize=False).fit_transform(image))
    cache = tmp_path / "cache"
    assert_close(Projector(path, cache_dir=cache).project_image(image), reference)
    (kept,) = cache.glob("*.npz")  # the resampled atlas is kept
    stamp = kept.stat().st_mtime_ns
    assert_close(Projector(path, cache_dir=cache).project_image(image), reference)
    assert kept.stat().st_mtime_ns == stamp, "the second projector read the kept matrix"
    kept.write_bytes(b"corrupt")
    assert_close(Projector(path, cache_dir=cache).project_image(image), reference)
    assert sp.load_npz(kept).shape[1] == 8, "a corrupt entry is rebuilt"


def test_projector_is_cached_per_process(standin64, projector):
    assert get_projector(standin64) is projector
    assert projector.atlas_id == standin64.atlas_id and projector.dim == 64


def test_bad_inputs(projector):
    assert np.all(projector.project_voxels([np.zeros(0, dtype=np.int64)]) == 0)
    assert projector.project_voxels([]).shape == (0, 64)


def test_an_atlas_already_on_the_grid_is_cached_too(tmp_path, monkeypatch):
    """The stand-in's maps lie on the grid; inflating them took seconds in every process."""
    from niclip_ray.atlas import projection
    from niclip_ray.atlas.mask import brain_mask_grid

    grid = brain_mask_grid()
    data = np.zeros((*grid.shape, 3), np.float32)
    data[40:50, 50:60, 40:50, 0], data[30:35, 30:40, 30:40, 1], data[60:70, 60:70, 50:60, 2] = 1.0, 0.5, 2.0
    maps = tmp_path / "maps.nii.gz"
    nib.save(nib.Nifti1Image(data, grid.affine), maps)
    first = projection.cached_atlas_matrix(maps, grid, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def rebuilt(*args, **kwargs):
        raise AssertionError("the cached matrix should have been read")

    monkeypatch.setattr(projection, "atlas_matrix", rebuilt)
    again = projection.cached_atlas_matrix(maps, grid, cache_dir=tmp_path / "cache")
    assert (first != again).nnz == 0 and first.shape == (int(np.prod(grid.shape)), 3)
