"""Retrieval cores against independent oracles: brute-force cosine, closed-form ridge, dense maps."""

import nibabel as nib
import numpy as np
import pytest

from niclip_ray._testing import toy_atlas, toy_atlas_id
from niclip_ray.atlas.difumo import load_atlas
from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text_fingerprint import check_text_model, text_model_sha256
from niclip_ray.retrieval.brain_maps import MapBuilder, save_map
from niclip_ray.retrieval.queries import check_in_brain, query_text, read_query_file
from niclip_ray.retrieval.ridge import fit_ridge
from niclip_ray.retrieval.search import ExactSearch


def brute_force(queries, candidates, k):
    out = []
    for q in queries:
        scores = [float(np.dot(q, c) / (np.linalg.norm(q) * np.linalg.norm(c))) for c in candidates]
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:k]
        out.append((order, [scores[i] for i in order]))
    return out


@pytest.mark.parametrize("k", [1, 5, 40, 100])
def test_exact_search_matches_brute_force(k):
    rng = np.random.default_rng(0)
    queries, candidates = rng.standard_normal((7, 16)), rng.standard_normal((40, 16)) * 3
    rows, scores = ExactSearch(candidates).top_k(queries, k, block=3)
    for (order, expected), got_rows, got_scores in zip(brute_force(queries, candidates, k), rows, scores):
        assert list(got_rows) == order
        np.testing.assert_allclose(got_scores, expected, atol=1e-5)


def test_exact_search_ties_keep_row_order_and_checks_k():
    candidates = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rows, _ = ExactSearch(candidates).top_k(np.array([[1.0, 0.0]]), 2)
    assert rows.tolist() == [[0, 1]]
    with pytest.raises(ParameterError, match="top_k"):
        ExactSearch(candidates).top_k(candidates, 0)


def closed_form(x, y, alpha):
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, ym - xm @ w


def test_ridge_equals_the_closed_form():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 8))
    y = x @ rng.standard_normal((8, 5)) + 0.1 * rng.standard_normal((30, 5)) + 2.0
    model = fit_ridge(x, y, alphas=(0.7,))
    w, b = closed_form(x, y, 0.7)
    np.testing.assert_allclose(model.coef, w, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(model.intercept, b, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(model.predict(x[:3]), x[:3] @ w + b, rtol=1e-9)


def test_ridge_cv_picks_the_alpha_a_plain_loop_picks():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 12))
    y = x[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((40, 4))
    alphas = (0.01, 1.0, 10.0, 100.0, 1000.0)
    model = fit_ridge(x, y, alphas=alphas, n_folds=4, seed=3)
    folds = np.array_split(np.random.default_rng(3).permutation(40), 4)
    mse = {}
    for alpha in alphas:
        total = 0.0
        for held in folds:
            train = np.setdiff1d(np.arange(40), held)
            w, b = closed_form(x[train], y[train], alpha)
            total += ((x[held] @ w + b - y[held]) ** 2).sum()
        mse[alpha] = total / y.size
    assert model.alpha == min(mse, key=mse.get)
    for alpha in alphas:
        assert model.cv_mse[alpha] == pytest.approx(mse[alpha], rel=1e-9)
    w, b = closed_form(x, y, model.alpha)
    np.testing.assert_allclose(model.coef, w, rtol=1e-8, atol=1e-10)


def test_ridge_rejects_bad_penalties():
    with pytest.raises(ParameterError, match="alphas"):
        fit_ridge(np.ones((4, 2)), np.ones((4, 1)), alphas=(0.0,))


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    toy_atlas(root, dim=64)
    found = load_atlas(64, data_dir=root)
    assert found.atlas_id == toy_atlas_id(64)
    return found


def test_map_is_the_weighted_sum_of_components_on_the_mni_grid(atlas, tmp_path):
    from niclip_ray.atlas.mask import brain_mask_grid
    from niclip_ray.atlas.projection import atlas_matrix

    builder = MapBuilder(atlas)
    coef = np.random.default_rng(0).standard_normal(64)
    img = builder.image(coef)
    mask = load_brain_mask()
    assert img.shape == mask.shape == (91, 109, 91)
    np.testing.assert_array_equal(img.affine, mask.affine)
    dense = atlas_matrix(atlas.maps_path, brain_mask_grid()).toarray() @ coef
    dense = dense.reshape(mask.shape) * (np.asarray(mask.dataobj) > 0)
    np.testing.assert_allclose(img.get_fdata(), dense, atol=1e-5)
    nifti, png = save_map(img, tmp_path / "query.nii.gz", "query")
    assert png == tmp_path / "query.png" and png.stat().st_size > 0
    written = nib.load(nifti)
    assert written.shape == mask.shape
    np.testing.assert_allclose(written.affine, mask.affine)


def test_query_checks(tmp_path):
    assert query_text("  working memory ") == "working memory"
    for bad in ("", "   "):
        with pytest.raises(ParameterError, match="query"):
            query_text(bad)
    (tmp_path / "latin1.txt").write_bytes("m\xe9moire de travail".encode("latin-1"))
    with pytest.raises(ParameterError, match="not valid UTF-8"):
        read_query_file(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ParameterError, match="query_file"):
        read_query_file(tmp_path / "empty.txt")
    (tmp_path / "ok.txt").write_text("faces\n", encoding="utf-8")
    assert read_query_file(tmp_path / "ok.txt") == "faces"


def test_a_map_off_the_brain_is_refused():
    mask = load_brain_mask()
    inside = np.asarray(mask.dataobj) > 0
    data = np.zeros(mask.shape, np.float32)
    data[~inside] = 1.0  # every voxel outside the brain
    with pytest.raises(InputError, match="off the brain"):
        check_in_brain(nib.Nifti1Image(data, mask.affine), "outside")
    with pytest.raises(InputError, match="every voxel is zero"):
        check_in_brain(nib.Nifti1Image(np.zeros(mask.shape, np.float32), mask.affine), "zero")
    data[inside] = 1.0
    assert check_in_brain(nib.Nifti1Image(data, mask.affine), "brain").shape == mask.shape


def test_text_model_check():
    sha = text_model_sha256("all-minilm-l6-v2")
    assert sha == text_model_sha256("all-minilm-l6-v2") and len(sha) == 64
    config = {"text_model_id": "all-minilm-l6-v2", "text_model_sha256": sha}
    check_text_model(config, "all-minilm-l6-v2", sha, where="text")
    check_text_model({"text_model_id": "all-minilm-l6-v2"}, "all-minilm-l6-v2", "0" * 64, where="text")  # old bundle
    with pytest.raises(InputError, match="trained on 'all-minilm-l6-v2'"):
        check_text_model(config, "smollm2-135m", None, where="text features in X")
    with pytest.raises(InputError, match="other files"):
        check_text_model(config, "all-minilm-l6-v2", "f" * 64, where="the query")
    with pytest.raises(InputError, match="does not record its text model"):
        check_text_model({}, "all-minilm-l6-v2", sha, where="text")
