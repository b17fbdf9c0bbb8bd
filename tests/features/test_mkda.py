"""MKDA spheres as sparse voxel indices, checked against NiMARE's MKDAKernel."""

import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMasker
from nimare.meta.kernel import MKDAKernel
from nimare.meta.utils import sphere_kernel_offsets

from niclip_ray.atlas.mask import MaskGrid, brain_mask_grid, load_brain_mask
from niclip_ray.corpus import ingest
from niclip_ray.features.mkda import sphere_offsets, study_map, study_voxels


@pytest.fixture(scope="module")
def coordinates(tmp_path_factory):
    """Peaks of every study of NiMARE's shipped n-back/flanker studyset."""
    corpus, _ = ingest("nimare:nback_vs_flanker", tmp_path_factory.mktemp("corpus"))
    return corpus.coordinates


@pytest.fixture(scope="module")
def masker():
    return NiftiMasker(load_brain_mask()).fit()


def nimare_rows(coords: pd.DataFrame, masker, r=10, value=1, return_type="sparse"):
    """NiMARE's MKDA maps for the studies of ``coords`` (one row per study, sorted by id)."""
    frame = coords.rename(columns={"study_id": "id"})[["id", "x", "y", "z"]].astype({a: float for a in "xyz"})
    return MKDAKernel(r=r, value=value).transform(frame, masker=masker, return_type=return_type)


@pytest.mark.parametrize("radius", [10, 9, 6, 4.5])
def test_sphere_offsets_match_nimare(radius):
    ours = {tuple(o) for o in sphere_offsets(radius, (2.0, 2.0, 2.0))}
    theirs = {tuple(o) for o in sphere_kernel_offsets(radius, np.array([2.0, 2.0, 2.0]))}
    assert ours == theirs


def test_every_shipped_study_matches_nimare(coordinates, masker):
    sparse = nimare_rows(coordinates, masker)
    grid = brain_mask_grid()
    ids = np.unique(coordinates["study_id"])
    assert sparse.shape == (len(ids), grid.n_voxels) and len(ids) == 320
    by_study = dict(tuple(coordinates.groupby("study_id")))
    for row, study_id in enumerate(ids):
        ours = study_voxels(by_study[study_id][["x", "y", "z"]].to_numpy(), grid)
        theirs = np.sort(sparse.indices[sparse.indptr[row] : sparse.indptr[row + 1]])
        np.testing.assert_array_equal(ours, theirs, err_msg=f"study {study_id}")


def test_radius_and_value_match_nimare_dense(coordinates, masker):
    some = coordinates[coordinates["study_id"].isin(np.unique(coordinates["study_id"])[:12])]
    dense = nimare_rows(some, masker, r=6, value=2, return_type="array")
    mask_img = load_brain_mask()
    for row, (study_id, peaks) in enumerate(some.groupby("study_id")):
        indices, values = study_map(peaks[["x", "y", "z"]].to_numpy(), mask_img, radius=6, value=2)
        ours = np.zeros(dense.shape[1], dtype=np.float32)
        ours[indices] = values
        np.testing.assert_array_equal(ours, dense[row], err_msg=f"study {study_id}")


def test_peaks_outside_the_field_of_view_match_nimare():
    """On a full mask, spheres of peaks beyond the grid are clipped to it, as in NiMARE."""
    import nibabel as nib

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -20.0  # grid covers -20..18 mm on each axis
    mask_img = nib.Nifti1Image(np.ones((20, 20, 20), dtype=np.uint8), affine)
    coords = pd.DataFrame(
        {
            "study_id": ["a", "a", "b", "c", "c"],
            # a: beyond the grid by 5 and 8 mm; b: far away; c: half-voxel positions
            "x": [-25.0, 26.0, 500.0, 3.0, -19.0],
            "y": [0.0, 10.0, 500.0, 1.0, 17.0],
            "z": [10.0, -5.0, 500.0, -5.0, 9.0],
        }
    )
    sparse = nimare_rows(coords, NiftiMasker(mask_img).fit())
    grid = MaskGrid.from_img(mask_img)
    for row, (study_id, peaks) in enumerate(coords.groupby("study_id")):
        ours = study_voxels(peaks[["x", "y", "z"]].to_numpy(), grid)
        theirs = np.sort(sparse.indices[sparse.indptr[row] : sparse.indptr[row + 1]])
        np.testing.assert_array_equal(ours, theirs, err_msg=f"study {study_id}")
    assert len(study_voxels(np.array([[-25.0, 0.0, 10.0]]), grid)) > 0
    assert len(study_voxels(np.array([[500.0, 500.0, 500.0]]), grid)) == 0


def test_mask_image_and_grid_agree():
    peaks = np.array([[30.0, -20.0, 50.0], [-40.0, 10.0, 0.0]])
    from_img = study_voxels(peaks, load_brain_mask())
    from_grid = study_voxels(peaks, MaskGrid.from_img(load_brain_mask()))
    np.testing.assert_array_equal(from_img, from_grid)
    assert np.all(np.diff(from_grid) > 0)


def test_no_peaks_and_bad_values():
    grid = brain_mask_grid()
    assert study_voxels(np.zeros((0, 3)), grid).size == 0
    with pytest.raises(ValueError, match="finite"):
        study_voxels(np.array([[0.0, np.nan, 0.0]]), grid)
    with pytest.raises(ValueError, match="radius"):
        sphere_offsets(-1.0)
