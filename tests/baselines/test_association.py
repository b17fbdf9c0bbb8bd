"""The sparse Neurosynth engine against NiMARE's CorrelationDecoder and against hand-computed chi-squares.

The oracle is NiMARE itself: ``NeurosynthBaseline(engine="nimare")`` fits one MKDAChi2 per
term with ``CorrelationDecoder`` on all 320 studies of the shipped n-back/flanker set, and
its ``transform`` gives the reference correlations.
"""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_to_img
from nimare.stats import pearson
from scipy.stats import chi2_contingency

from niclip_ray.atlas.mask import MaskGrid
from niclip_ray.baselines import GCLDABaseline, NeurosynthBaseline
from niclip_ray.baselines.association import activation_matrix, association_z
from niclip_ray.baselines.base import template_mask
from niclip_ray.baselines.neurosynth import decodable_terms
from niclip_ray.errors import ParameterError
from niclip_ray.features.mkda import study_voxels

# "of" is in every abstract and "tower of london" in none: NiMARE fits neither
VOCABULARY = ["working memory", "n-back", "flanker", "attention", "conflict", "error", "memory", "interference",
              "stroop", "theory of mind", "of", "tower of london"]


def test_association_z_by_hand():
    """Six studies, the first three mention the term; five voxels of a toy mask."""
    voxels = [[0, 3, 4], [0, 3], [3], [1, 3, 4], [3], [3]]
    activations = activation_matrix([np.array(v) for v in voxels], n_voxels=5)
    labels = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=bool)
    z = association_z(activations, labels)
    assert z.dtype == np.float32 and z.shape == (2, 5)
    # term 1, voxel 0: table [[2, 1], [0, 3]] (mentions x active), chi2 = 6 (2*3 - 1*0)^2 / (3*3*2*4) = 3
    # voxel 1: [[0, 3], [1, 2]], chi2 = 6 (0*2 - 3*1)^2 / (3*3*1*5) = 1.2, fewer active among mentions: z < 0
    # voxel 2 (no study) and 3 (every study): z = 0; voxel 4: 1 of 3 with and without the term: z = 0
    np.testing.assert_allclose(z[0], [np.sqrt(3), -np.sqrt(1.2), 0, 0, 0], rtol=1e-6)
    # term 2 (five mentions, counted over the sixth study): voxel 0 [[2, 3], [0, 1]], chi2 = 6 * 2^2 / (5*1*2*4)
    # voxel 1 [[1, 4], [0, 1]], chi2 = 6 * 1 / (5*1*1*5); voxel 4 [[2, 3], [0, 1]] as voxel 0
    np.testing.assert_allclose(z[1], [np.sqrt(0.6), np.sqrt(0.24), 0, 0, np.sqrt(0.6)], rtol=1e-6)


def test_association_z_is_pearson_chi_square():
    """Random studies: every voxel's |z|^2 is scipy's uncorrected chi-square of the 2x2 table."""
    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)) < 0.3
    dense[:, 0], dense[:, 1] = False, True
    labels = rng.random((3, 40)) < np.array([[0.2], [0.5], [0.9]])
    z = association_z(activation_matrix([np.flatnonzero(row) for row in dense], 30), labels)
    assert (z[:, :2] == 0).all()
    for term, selected in enumerate(labels):
        for voxel in range(2, 30):
            table = np.array([[np.sum(dense[selected, voxel]), np.sum(~dense[selected, voxel])],
                              [np.sum(dense[~selected, voxel]), np.sum(~dense[~selected, voxel])]])
            chi2 = chi2_contingency(table, correction=False)[0]
            sign = np.sign(table[0, 0] / selected.sum() - table[1, 0] / (~selected).sum())
            assert z[term, voxel] == pytest.approx(sign * np.sqrt(chi2), rel=1e-6, abs=1e-6)


def test_association_z_rejects_terms_without_comparison():
    activations = activation_matrix([np.array([0]), np.array([1])], n_voxels=2)
    with pytest.raises(ValueError, match="all or by none"):
        association_z(activations, np.array([[True, True]]))
    tfidf = pd.DataFrame({"b": [0.5, 0.0, 0.2], "all": [0.1, 0.2, 0.3], "a": [0.0, 0.3, 0.0], "none": 0.0})
    terms, labels = decodable_terms(tfidf, 0.001)
    assert terms == ["a", "b"]
    np.testing.assert_array_equal(labels, [[False, True, False], [True, False, True]])


@pytest.fixture(scope="module")
def engines(nback_flanker):
    """Both engines fitted on all 320 studies."""
    corpus = nback_flanker[1]
    ids = corpus.studies["study_id"].tolist()
    fast = NeurosynthBaseline().fit(corpus, ids, VOCABULARY)
    oracle = NeurosynthBaseline(engine="nimare").fit(corpus, ids, VOCABULARY)
    return corpus, fast, oracle


def test_sparse_engine_matches_nimare(engines):
    _, fast, oracle = engines
    assert fast.terms_ == oracle.terms_
    assert "of" not in fast.terms_ and "tower of london" not in fast.terms_ and "theory of mind" in fast.terms_
    np.testing.assert_array_equal(fast.mask_bool_, oracle.mask_bool_)
    difference = np.abs(fast.term_maps_ - oracle.term_maps_).max()
    assert difference <= 1e-5, f"max abs difference of the z maps: {difference}"


def test_sparse_engine_decodes_as_nimare(engines):
    corpus, fast, oracle = engines
    mask = template_mask()
    grid = MaskGrid.from_img(mask)
    studies = corpus.studies.set_index("study_id")
    maps = {"motor": resample_to_img(load_sample_motor_activation_image(), mask, interpolation="continuous",
                                     copy_header=True, force_resample=True)}
    for label in ("n-back", "flanker"):
        sid = studies.index[studies["label"] == label][0]
        peaks = corpus.coordinates.loc[corpus.coordinates["study_id"] == sid, ["x", "y", "z"]].to_numpy()
        values = np.zeros(grid.n_voxels, dtype=np.float32)
        values[study_voxels(peaks, grid)] = 1
        maps[label] = nib.Nifti1Image(grid.unmask(values), mask.affine)
    ours, theirs = fast.decode(maps), oracle.decode(maps)
    pd.testing.assert_frame_equal(ours.drop(columns="score"), theirs.drop(columns="score"))
    np.testing.assert_allclose(ours["score"], theirs["score"], rtol=1e-9, equal_nan=True)
    for map_id, img in maps.items():
        scores = ours[ours["map_id"] == map_id].set_index("term")["score"]
        # NiMARE's pearson in float64 (as the baseline always decoded) on the oracle's maps
        values = np.asarray(img.dataobj, dtype=np.float64)[oracle.mask_bool_]
        expected = pd.Series(pearson(values[None, :], oracle.term_maps_.astype(np.float64)), index=oracle.terms_)
        np.testing.assert_allclose(scores[expected.index], expected.to_numpy(), rtol=1e-9)
        assert scores.dropna().index.tolist() == expected.sort_values(ascending=False).index.tolist()
        # and the decoder's own transform, which correlates in float32
        r = oracle.decoder_.transform(img)["r"].rename(lambda feature: feature.split("__", 1)[1])
        np.testing.assert_allclose(scores[r.index], r.to_numpy(), rtol=1e-4)


def test_engine_parameters():
    with pytest.raises(ParameterError, match="engine"):
        NeurosynthBaseline(engine="fast")
    with pytest.raises(ParameterError, match="target_image"):
        NeurosynthBaseline(target_image="z_desc-uniformity")
    with pytest.raises(ParameterError, match="frequency_threshold"):
        NeurosynthBaseline(frequency_threshold=0)


def test_gclda_max_studies_is_a_seeded_subsample(nback_flanker, tiny_split):
    corpus, train = nback_flanker[1], tiny_split[0]

    def fit(**params):
        return GCLDABaseline(n_topics=2, n_regions=2, n_iters=2, loglikely_freq=2, **params).fit(
            corpus, train, ["n-back", "flanker"]
        )

    sub = fit(max_studies=12, seed=3)
    assert sub.n_studies_ == 12 and set(sub.study_ids_) < set(train)
    assert sub.model_.ids == sub.study_ids_
    assert fit(max_studies=12, seed=3).study_ids_ == sub.study_ids_
    assert fit(max_studies=12, seed=4).study_ids_ != sub.study_ids_
    everything = fit(max_studies=None)
    assert everything.n_studies_ == len(train) and everything.model_.ids == sorted(train)
    with pytest.raises(ParameterError, match="max_studies"):
        fit(max_studies=0)
