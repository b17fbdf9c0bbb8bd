"""Permutation null: p-value formula, seeding, and a naive per-permutation twin."""

import numpy as np
import pytest

from niclip_ray.evaluation import null as nulls
from niclip_ray.evaluation.metrics import map_scores, pair_scores


def test_empirical_p_on_a_constructed_null():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    # two values equal obs and one exceeds it: (3 + 1) / (4 + 1)
    assert nulls.empirical_p(null, 0.5) == pytest.approx(0.8)
    assert nulls.empirical_p(null, 1.0) == pytest.approx(0.2)
    assert nulls.empirical_p(null, 0.0) == pytest.approx(1.0)
    # float sums that differ only by rounding count as equal
    assert nulls.empirical_p(np.array([0.1 + 0.2]), 0.3) == pytest.approx(1.0)
    assert nulls.normalised(0.6, 0.2) == pytest.approx(3.0)
    assert np.isinf(nulls.normalised(0.5, 0.0))


def test_permutations_are_seeded():
    a = nulls.permutations(7, 50, seed=0)
    assert a.shape == (50, 7)
    np.testing.assert_array_equal(a, nulls.permutations(7, 50, seed=0))
    assert not np.array_equal(a, nulls.permutations(7, 50, seed=1))
    assert all(sorted(p) == list(range(7)) for p in a)


def _random_level(seed, n_maps=8, n_terms=10):
    rng = np.random.default_rng(seed)
    ranks = np.array([rng.permutation(n_terms) + 1.0 for _ in range(n_maps)])
    ranks[rng.random(ranks.shape) < 0.2] = np.inf  # some terms unlisted
    truth = rng.random((n_maps, n_terms)) < 0.2
    truth[np.arange(n_maps), rng.integers(0, n_terms, n_maps)] = True
    return truth, ranks


def test_nulls_match_rescoring_each_permutation():
    truth, ranks = _random_level(5)
    perms = nulls.permutations(len(truth), 40, seed=2)
    summary = nulls.summary_null(pair_scores(truth, ranks, 3), perms)
    per_term = nulls.per_term_null(truth, ranks, 3, perms)
    for p, perm in enumerate(perms):
        shuffled = map_scores(truth, ranks[perm], 3)
        assert summary["mean_recall_at_k"][p] == pytest.approx(shuffled["recall_at_k"].mean())
        assert summary["mean_hit_at_k"][p] == pytest.approx(shuffled["hit_at_k"].mean())
        assert summary["mrr"][p] == pytest.approx(shuffled["reciprocal_rank"].mean())
        for t in range(truth.shape[1]):
            labelled = truth[:, t]
            expected = (ranks[perm][labelled, t] <= 3).mean() if labelled.any() else np.nan
            np.testing.assert_allclose(per_term[p, t], expected)


def test_a_perfect_decoder_is_above_chance_and_a_constant_one_is_not():
    n = 6
    truth = np.eye(n, dtype=bool)
    perfect = np.where(np.eye(n, dtype=bool), 1.0, np.inf)
    perms = nulls.permutations(n, 200, seed=0)
    null = nulls.summary_null(pair_scores(truth, perfect, 1), perms)["mean_hit_at_k"]
    # each map is its own list's only hit: null mean is the expected fixed-point fraction, 1/n
    assert null.mean() == pytest.approx(1 / n, abs=0.05)
    assert nulls.empirical_p(null, 1.0) <= 0.05
    constant = np.tile(np.arange(1.0, n + 1), (n, 1))  # every map gets the same list
    const_null = nulls.summary_null(pair_scores(truth, constant, 1), perms)["mean_hit_at_k"]
    observed = map_scores(truth, constant, 1)["hit_at_k"].mean()
    assert nulls.empirical_p(const_null, observed) == pytest.approx(1.0)
