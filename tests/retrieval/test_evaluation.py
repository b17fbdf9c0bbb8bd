"""Held-out retrieval evaluation: metrics against plain loops, then the whole function on the tiny world."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, wilcoxon

from niclip_ray.model import CLIP
from niclip_ray.model.bundle import load_bundle
from niclip_ray.retrieval.evaluation import evaluate_retrieval, image_to_text, own_ranks, paired_test, pearson_rows
from niclip_ray.retrieval.index import Index
from niclip_ray.retrieval.table import index_items, index_rows
from niclip_ray.tables import write_parquet_atomic


def test_own_ranks_and_recall_match_a_loop():
    rng = np.random.default_rng(0)
    images, texts = rng.standard_normal((12, 6)), rng.standard_normal((12, 6))
    result = image_to_text(images, texts, ks=(1, 3), n_permutations=50, seed=1)
    sims = [[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in texts] for a in images]
    ranks = [1 + sum(s > row[i] for s in row) for i, row in enumerate(sims)]
    assert own_ranks(np.array(sims)).tolist() == ranks
    assert result["recall@1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
    assert result["recall@3"] == pytest.approx(np.mean(np.array(ranks) <= 3))
    assert result["median_rank"] == np.median(ranks)
    assert result == image_to_text(images, texts, ks=(1, 3), n_permutations=50, seed=1)  # seeded


def test_a_perfect_pairing_beats_the_null():
    latents = np.random.default_rng(2).standard_normal((20, 8))
    result = image_to_text(latents, latents, n_permutations=99, seed=0)
    assert result["recall@1"] == 1.0 and result["median_rank"] == 1.0
    assert result["recall@1_p"] == pytest.approx(0.01) and result["median_rank_p"] == pytest.approx(0.01)
    assert result["recall@1_null"] < 0.2 and result["median_rank_null"] > 5


def test_pearson_and_paired_test_match_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 40)), rng.standard_normal((5, 40))
    np.testing.assert_allclose(pearson_rows(a, b), [pearsonr(x, y)[0] for x, y in zip(a, b)], rtol=1e-10)
    assert np.isnan(pearson_rows(np.ones((1, 4)), b[:1, :4]))[0]
    ours, base = rng.random(9), rng.random(9)
    assert paired_test(ours, base)["p"] == pytest.approx(wilcoxon(ours - base).pvalue)


def test_evaluation_on_held_out_studies(world, tmp_path):
    out = tmp_path / "index"  # built without Ray, through the stage's pure function
    plan = index_items(world.corpus, world.features, world.split, "abstract")
    write_parquet_atomic(index_rows(plan.items, CLIP.from_state_dict(load_bundle(world.bundle).state_dict).eval()),
                         out / "part-00000.parquet")
    (out / "index.json").write_text(json.dumps({"section": "abstract"}))
    index = Index(out, world.bundle, atlas_dir=world.atlas_dir)
    result = evaluate_retrieval(index, world.corpus, world.features / "text", n_permutations=20, seed=0)
    assert result.image_to_text["n"] == len(world.split["test"]) == 7
    corr = result.map_correlations
    assert corr["study_id"].tolist() == world.split["test"]
    assert set(corr.columns) == {"study_id", "ridge", "mean_training_map", "nearest_text_study"}
    assert np.isfinite(corr.drop(columns="study_id").to_numpy()).all()
    assert result.paired_tests["baseline"].tolist() == ["mean_training_map", "nearest_text_study"]
    assert (result.paired_tests["p"].between(0, 1)).all()
    assert len(result.write(tmp_path / "eval")) == 3


def test_evaluation_reads_back_what_it_wrote(tmp_path):
    from niclip_ray.retrieval.evaluation import RetrievalEvaluation

    assert RetrievalEvaluation.read(tmp_path) is None
    written = RetrievalEvaluation(
        {"n": 3, "recall@10": 0.5, "recall@10_p": 0.01},
        pd.DataFrame({"study_id": ["007", "8"], "ridge": [0.1, 0.2]}),
        pd.DataFrame({"baseline": ["mean_training_map"], "mean_r_ridge": [0.1], "mean_r_baseline": [0.05], "p": [0.2]}),
        ridge_alpha=10.0,
    )
    written.write(tmp_path)
    read = RetrievalEvaluation.read(tmp_path)
    assert read.image_to_text == written.image_to_text and read.ridge_alpha == 10.0
    pd.testing.assert_frame_equal(read.map_correlations, written.map_correlations)
    pd.testing.assert_frame_equal(read.paired_tests, written.paired_tests)


def test_the_map_caveat_holds_unless_the_ridge_beat_the_mean_map():
    from niclip_ray.retrieval.evaluation import map_caveat

    def record(mean_r, mean_map, p):
        return {"n_heldout": 40, "text_to_map": {"mean_r": mean_r, "mean_r_mean_training_map": mean_map, "p": p}}

    assert map_caveat(None) is None and map_caveat({}) is None
    assert map_caveat(record(0.30, 0.20, 0.001)) is None
    for worse in (record(0.20, 0.30, 0.001), record(0.30, 0.20, 0.2), record(0.25, 0.25, 1.0)):
        caveat = map_caveat(worse)
        assert "not better than the mean training map" in caveat and "40 held-out studies" in caveat
