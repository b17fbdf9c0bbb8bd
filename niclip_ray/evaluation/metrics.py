"""Decoding metrics on rank and truth matrices (plain numpy).

For one level, ``ranks[i, t]`` is the rank of term ``t`` in map ``i``'s prediction list
(1 = best, ``inf`` when the term is not listed) and ``truth[i, t]`` says whether ``t`` is
a true label of map ``i``. With ``k`` the cut-off:

- recall@k = |true ∩ top-k| / |true|
- hit@k = [best rank ≤ k]
- best rank = the smallest rank of a true label (``inf`` when none is listed)
- reciprocal rank = 1 / best rank (0 when none is listed); MRR is its mean.

Ties are scored pessimistically: a term's effective rank is the number of listed terms
ranked at or before it (:func:`effective_ranks`), so tied terms all take the last
position of their tie group and a decoder cannot gain from ties at the cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def effective_ranks(frame: pd.DataFrame, by: list[str]) -> np.ndarray:
    """Pessimistic ranks: the count of listed terms ranked at or before each row.

    Parameters
    ----------
    frame : DataFrame
        Prediction rows with a numeric ``rank`` column.
    by : list of str
        Columns identifying one prediction list (e.g. ``["map_id", "level"]``).

    Returns
    -------
    (n_rows,) float64 array
        Ranks 1..n within each list; tied rows all get the largest position of their group.
    """
    if frame.empty:
        return np.zeros(0, dtype=np.float64)
    return frame.groupby(by, sort=False)["rank"].rank(method="max").to_numpy(dtype=np.float64)


def rank_matrix(predictions: pd.DataFrame, map_ids: list[str], terms: list[str]) -> np.ndarray:
    """Arrange one level's predictions as a ``(n_maps, n_terms)`` matrix of effective ranks.

    Parameters
    ----------
    predictions : DataFrame
        Rows of one level with ``map_id``, ``term`` and ``rank``; ranks are made
        pessimistic with :func:`effective_ranks`. Terms not in ``terms`` are ignored.
    map_ids, terms : list of str
        Row and column order.

    Returns
    -------
    (n_maps, n_terms) float64 array
        Effective rank, ``inf`` where a term is not listed for a map.
    """
    out = np.full((len(map_ids), len(terms)), np.inf)
    if predictions.empty:
        return out
    ranks = effective_ranks(predictions, ["map_id"])
    rows = pd.Index(map_ids).get_indexer(predictions["map_id"])
    cols = pd.Index(terms).get_indexer(predictions["term"])
    keep = (rows >= 0) & (cols >= 0)
    out[rows[keep], cols[keep]] = ranks[keep]
    return out


def truth_matrix(truth: pd.DataFrame, map_ids: list[str], terms: list[str]) -> np.ndarray:
    """One level's true labels as a ``(n_maps, n_terms)`` bool matrix (columns ``map_id, term``)."""
    out = np.zeros((len(map_ids), len(terms)), dtype=bool)
    rows = pd.Index(map_ids).get_indexer(truth["map_id"])
    cols = pd.Index(terms).get_indexer(truth["term"])
    keep = (rows >= 0) & (cols >= 0)
    out[rows[keep], cols[keep]] = True
    return out


@dataclass(frozen=True)
class PairScores:
    """Scores of every (truth of map i, prediction list of map j) pair.

    Attributes
    ----------
    n_hits : (n_maps, n_lists) int64
        Number of map i's true labels in list j's top k.
    best_rank : (n_maps, n_lists) float64
        Best rank in list j of a true label of map i (``inf`` when none is listed).
    n_true : (n_maps,) int64
        Number of true labels of each map.
    k : int
        The cut-off.
    """

    n_hits: np.ndarray
    best_rank: np.ndarray
    n_true: np.ndarray
    k: int

    @property
    def recall(self) -> np.ndarray:
        """(n_maps, n_lists) float64 recall@k."""
        return self.n_hits / self.n_true[:, None]

    @property
    def hit(self) -> np.ndarray:
        """(n_maps, n_lists) float64 hit@k (0 or 1)."""
        return (self.best_rank <= self.k).astype(np.float64)

    @property
    def reciprocal_rank(self) -> np.ndarray:
        """(n_maps, n_lists) float64 reciprocal rank (0 when no true label is listed)."""
        return 1.0 / self.best_rank


def pair_scores(truth: np.ndarray, ranks: np.ndarray, k: int) -> PairScores:
    """Score every map's truth against every map's prediction list.

    The diagonal gives the observed scores; the permutation null reads its other entries.
    Memory is two ``(n_maps, n_maps)`` arrays (about 16·n_maps² bytes: 41 MB for 1,600
    maps, 1.6 GB for 10,000).

    Parameters
    ----------
    truth : (n_maps, n_terms) bool
        True labels; every row needs at least one.
    ranks : (n_lists, n_terms) float64
        Effective ranks, ``inf`` for unlisted terms.
    k : int
        Cut-off (≥ 1).

    Returns
    -------
    PairScores
    """
    truth = np.asarray(truth, dtype=bool)
    ranks = np.asarray(ranks, dtype=np.float64)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n_true = truth.sum(axis=1)
    if (n_true == 0).any():
        raise ValueError("every map needs at least one true label")
    in_top = (ranks <= k).astype(np.float64)
    n_hits = np.rint(truth.astype(np.float64) @ in_top.T).astype(np.int64)
    best = np.empty((truth.shape[0], ranks.shape[0]), dtype=np.float64)
    for i, row in enumerate(truth):
        best[i] = ranks[:, row].min(axis=1)
    return PairScores(n_hits=n_hits, best_rank=best, n_true=n_true.astype(np.int64), k=int(k))


def map_scores(truth: np.ndarray, ranks: np.ndarray, k: int) -> pd.DataFrame:
    """Observed scores of each map against its own prediction list.

    Parameters
    ----------
    truth : (n_maps, n_terms) bool
    ranks : (n_maps, n_terms) float64
    k : int

    Returns
    -------
    DataFrame
        One row per map: ``num_true_labels, recall_at_k, hit_at_k, best_rank,
        reciprocal_rank``.
    """
    truth = np.asarray(truth, dtype=bool)
    ranks = np.asarray(ranks, dtype=np.float64)
    n_true = truth.sum(axis=1)
    if (n_true == 0).any():
        raise ValueError("every map needs at least one true label")
    masked = np.where(truth, ranks, np.inf)
    best = masked.min(axis=1)
    return pd.DataFrame(
        {
            "num_true_labels": n_true.astype(np.int64),
            "recall_at_k": (truth & (ranks <= k)).sum(axis=1) / n_true,
            "hit_at_k": (best <= k).astype(np.float64),
            "best_rank": best,
            "reciprocal_rank": 1.0 / best,
        }
    )


def aggregate(scores: pd.DataFrame) -> dict[str, float]:
    """Level aggregates of :func:`map_scores`: mean recall, mean hit, median best rank, MRR."""
    return {
        "mean_recall_at_k": float(scores["recall_at_k"].mean()),
        "mean_hit_at_k": float(scores["hit_at_k"].mean()),
        "median_best_rank": float(np.median(scores["best_rank"].to_numpy())),
        "mrr": float(scores["reciprocal_rank"].mean()),
    }
