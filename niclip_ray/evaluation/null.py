"""Seeded permutation null: prediction lists shuffled across maps within one level.

Each permutation gives map ``i`` the prediction list of map ``perm[i]`` while keeping map
``i``'s true labels, so the null keeps the decoder's marginal preferences (a decoder that
always ranks the same popular terms first scores as well under the null) and asks whether
the pairing of maps with their own lists beats chance.

Empirical p-value = (#{null ≥ observed} + 1) / (n_permutations + 1); the chance-normalised
score is observed / null mean; a score is above chance when it exceeds the null mean and
p ≤ 0.05.
"""

from __future__ import annotations

import numpy as np

from niclip_ray.evaluation.metrics import PairScores

#: Values this close are treated as equal when counting null ≥ observed (float sums).
_TOLERANCE = 1e-12
#: Bool elements materialised at once by the per-term null.
_CHUNK_ELEMENTS = 20_000_000


def permutations(n_maps: int, n_permutations: int, seed: int) -> np.ndarray:
    """``(n_permutations, n_maps)`` int64 array of permutations from ``default_rng(seed)``."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(np.arange(n_maps, dtype=np.int64), (n_permutations, n_maps))
    return rng.permuted(base, axis=1)


def empirical_p(null: np.ndarray, observed: np.ndarray | float) -> np.ndarray:
    """Empirical p-values (#null ≥ observed + 1) / (n + 1) along axis 0 of ``null``.

    Parameters
    ----------
    null : (n_permutations, ...) float64
    observed : float or array broadcastable to ``null.shape[1:]``

    Returns
    -------
    float64 array of shape ``null.shape[1:]``
    """
    null = np.asarray(null, dtype=np.float64)
    n_ge = (null >= np.asarray(observed, dtype=np.float64) - _TOLERANCE).sum(axis=0)
    return (n_ge + 1.0) / (null.shape[0] + 1.0)


def normalised(observed: np.ndarray | float, null_mean: np.ndarray | float) -> np.ndarray:
    """observed / null mean (``inf`` when the null mean is 0 and observed > 0, NaN for 0/0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(np.asarray(observed, dtype=np.float64), np.asarray(null_mean, dtype=np.float64))


def summary_null(pairs: PairScores, perms: np.ndarray) -> dict[str, np.ndarray]:
    """Null distributions of a level's mean recall@k, mean hit@k and MRR.

    Parameters
    ----------
    pairs : PairScores
        Scores of every (truth, list) pair of the level's maps.
    perms : (n_permutations, n_maps) int64

    Returns
    -------
    dict
        ``mean_recall_at_k``, ``mean_hit_at_k``, ``mrr``: each ``(n_permutations,)`` float64.
    """
    rows = np.arange(perms.shape[1])[None, :]
    return {
        "mean_recall_at_k": pairs.recall[rows, perms].mean(axis=1),
        "mean_hit_at_k": pairs.hit[rows, perms].mean(axis=1),
        "mrr": pairs.reciprocal_rank[rows, perms].mean(axis=1),
    }


def per_term_null(truth: np.ndarray, ranks: np.ndarray, k: int, perms: np.ndarray) -> np.ndarray:
    """Null of each term's hit@k: the fraction of its maps whose (shuffled) list has it in the top k.

    Parameters
    ----------
    truth : (n_maps, n_terms) bool
    ranks : (n_maps, n_terms) float64
    k : int
    perms : (n_permutations, n_maps) int64

    Returns
    -------
    (n_permutations, n_terms) float64
        NaN for terms that label no map.
    """
    truth = np.asarray(truth, dtype=bool)
    in_top = np.asarray(ranks) <= k
    n_maps, n_terms = truth.shape
    counts = np.zeros((perms.shape[0], n_terms), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_maps * n_terms))
    for start in range(0, perms.shape[0], chunk):
        shuffled = in_top[perms[start : start + chunk]]  # (chunk, n_maps, n_terms)
        counts[start : start + chunk] = (shuffled & truth[None]).sum(axis=1)
    n_true = truth.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return counts / n_true[None, :]
