"""Metrics against hand-computed cases and a naive set-based twin."""

import numpy as np
import pandas as pd
import pytest

from niclip_ray.evaluation.metrics import (
    aggregate,
    effective_ranks,
    map_scores,
    pair_scores,
    rank_matrix,
    truth_matrix,
)

TERMS = ["a", "b", "c", "d", "e"]


def _predictions(lists: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    rows = [(m, term, rank) for m, items in lists.items() for term, rank in items]
    return pd.DataFrame(rows, columns=["map_id", "term", "rank"])


def test_hand_computed_scores_with_ties_and_missing_terms():
    # m1: truth {a, c}; list a,b,c,d -> top-2 {a,b}: recall 1/2, best 1.
    # m2: truth {d}; list c,b,a,d -> best 4: no hit at k=2, rr 1/4.
    # m3: truth {e}, e never listed -> best inf, rr 0.
    # m4: truth {b}; a and b tied at rank 1, so both take position 2 -> hit at k=2 only.
    preds = _predictions(
        {
            "m1": [("a", 1), ("b", 2), ("c", 3), ("d", 4)],
            "m2": [("c", 1), ("b", 2), ("a", 3), ("d", 4)],
            "m3": [("a", 1), ("b", 2)],
            "m4": [("a", 1), ("b", 1), ("c", 3)],
        }
    )
    truth = pd.DataFrame({"map_id": ["m1", "m1", "m2", "m3", "m4"], "term": ["a", "c", "d", "e", "b"]})
    maps = ["m1", "m2", "m3", "m4"]
    ranks = rank_matrix(preds, maps, TERMS)
    assert ranks[3].tolist() == [2, 2, 3, np.inf, np.inf]
    scores = map_scores(truth_matrix(truth, maps, TERMS), ranks, k=2)
    assert scores["num_true_labels"].tolist() == [2, 1, 1, 1]
    assert scores["recall_at_k"].tolist() == [0.5, 0.0, 0.0, 1.0]
    assert scores["hit_at_k"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert scores["best_rank"].tolist() == [1.0, 4.0, np.inf, 2.0]
    assert scores["reciprocal_rank"].tolist() == [1.0, 0.25, 0.0, 0.5]
    agg = aggregate(scores)
    assert agg["mean_recall_at_k"] == pytest.approx(1.5 / 4)
    assert agg["mean_hit_at_k"] == pytest.approx(0.5)
    assert agg["median_best_rank"] == pytest.approx(3.0)  # median of 1, 2, 4, inf
    assert agg["mrr"] == pytest.approx(1.75 / 4)
    # the tie at the cut-off does not count at k=1
    at_one = map_scores(truth_matrix(truth, maps, TERMS), ranks, k=1)
    assert at_one["hit_at_k"].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_effective_ranks_are_pessimistic_within_each_list():
    frame = pd.DataFrame({"map_id": ["x", "x", "x", "y", "y"], "rank": [1.0, 1.0, 3.0, 5.0, 7.0]})
    assert effective_ranks(frame, ["map_id"]).tolist() == [2.0, 2.0, 3.0, 1.0, 2.0]


def _naive_pair(truth_sets, lists, k):
    """Set-based scores of truth i against list j (lists are ordered term lists, no ties)."""
    n = len(truth_sets)
    recall, best = np.zeros((n, n)), np.full((n, n), np.inf)
    for i, true in enumerate(truth_sets):
        for j, ranked in enumerate(lists):
            recall[i, j] = len(true & set(ranked[:k])) / len(true)
            positions = [ranked.index(t) + 1 for t in true if t in ranked]
            best[i, j] = min(positions, default=np.inf)
    return recall, best


def test_pair_scores_match_naive_twin():
    rng = np.random.default_rng(3)
    terms = [f"t{i}" for i in range(12)]
    maps = [f"m{i}" for i in range(9)]
    lists = [list(rng.permutation(terms)[: rng.integers(3, 12)]) for _ in maps]
    truth_sets = [set(rng.choice(terms, size=rng.integers(1, 4), replace=False)) for _ in maps]
    preds = _predictions({m: [(t, r + 1) for r, t in enumerate(lst)] for m, lst in zip(maps, lists)})
    truth = pd.DataFrame([(m, t) for m, s in zip(maps, truth_sets) for t in s], columns=["map_id", "term"])
    pairs = pair_scores(truth_matrix(truth, maps, terms), rank_matrix(preds, maps, terms), k=3)
    recall, best = _naive_pair(truth_sets, lists, 3)
    np.testing.assert_allclose(pairs.recall, recall)
    np.testing.assert_array_equal(pairs.best_rank, best)
    np.testing.assert_array_equal(pairs.hit, (best <= 3).astype(float))
    np.testing.assert_allclose(pairs.reciprocal_rank, 1.0 / best)
    # the diagonal is the observed per-map score
    observed = map_scores(truth_matrix(truth, maps, terms), rank_matrix(preds, maps, terms), k=3)
    np.testing.assert_allclose(np.diag(pairs.recall), observed["recall_at_k"])


def test_maps_without_truth_are_rejected():
    with pytest.raises(ValueError, match="at least one true label"):
        map_scores(np.zeros((1, 2), dtype=bool), np.ones((1, 2)), k=1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        pair_scores(np.ones((1, 2), dtype=bool), np.ones((1, 2)), k=0)
