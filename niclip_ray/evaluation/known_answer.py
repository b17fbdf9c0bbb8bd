"""A two-label known-answer check: does each map rank its own label's term above the other's?

For maps of two kinds (say n-back and flanker studies), each kind has a term (``"n-back
task"``, ``"eriksen flanker task"``). A map scores 1 when its own term is ranked above the
other kind's term, 0 otherwise (ties count against it). The statistic is the mean score
per kind and overall; its null shuffles the labels across maps (seeded), so a decoder
that ignores the map cannot beat it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from niclip_ray.errors import InputError
from niclip_ray.evaluation.null import empirical_p


def own_term_first(
    predictions: pd.DataFrame, labels: Mapping[str, str], terms: Mapping[str, str], level: str = "task"
) -> pd.DataFrame:
    """Per map: the ranks of both terms and whether the map's own term comes first.

    Parameters
    ----------
    predictions : DataFrame
        Decode-contract rows (``map_id, level, rank, term``), one backend.
    labels : mapping
        Map id -> kind (a key of ``terms``).
    terms : mapping of two kinds to their term, or to a family of terms
        A family's rank is its best member's (the n-back family: every n-back task).
    level : str
        Prediction level the terms belong to.

    Returns
    -------
    DataFrame
        ``map_id, label, own_rank, other_rank, own_first``.
    """
    if len(terms) != 2:
        raise InputError(f"a known-answer check compares two kinds, got {sorted(terms)}")
    kinds = list(terms)
    family = {kind: [value] if isinstance(value, str) else list(value) for kind, value in terms.items()}
    member_of = {term: kind for kind, members in family.items() for term in members}
    rows = predictions[(predictions["level"] == level) & predictions["term"].isin(member_of)]
    ranks = rows.assign(kind=rows["term"].map(member_of)).pivot_table(
        index="map_id", columns="kind", values="rank", aggfunc="min")
    out = []
    for map_id, label in labels.items():
        if label not in terms:
            raise InputError(f"map {map_id}: label {label!r} is not one of {kinds}")
        other = kinds[1 - kinds.index(label)]
        own_rank = ranks.at[map_id, label] if map_id in ranks.index and label in ranks else np.inf
        other_rank = ranks.at[map_id, other] if map_id in ranks.index and other in ranks else np.inf
        own_rank, other_rank = (np.inf if pd.isna(r) else float(r) for r in (own_rank, other_rank))
        out.append((map_id, label, own_rank, other_rank, bool(own_rank < other_rank)))
    return pd.DataFrame(out, columns=["map_id", "label", "own_rank", "other_rank", "own_first"])


def known_answer_test(
    per_map: pd.DataFrame, n_permutations: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean ``own_first`` per kind and overall, with a label-permutation null.

    Under a permutation, each map keeps its two term ranks but gets a shuffled label, so
    "own" and "other" swap for maps whose label changed.

    Returns
    -------
    DataFrame
        One row per kind and ``all``: ``n_maps, observed, null_mean, p_value``, with
        p = (#null >= observed + 1) / (n + 1).
    """
    if per_map.empty:
        raise InputError("no maps to score in the known-answer check")
    labels = per_map["label"].to_numpy()
    kinds = sorted(set(labels))
    first, second = kinds[0], (kinds[1] if len(kinds) > 1 else None)
    own, other = per_map["own_rank"].to_numpy(), per_map["other_rank"].to_numpy()
    # the rank of the first kind's term in every map, whatever the map's label
    first_rank = np.where(labels == first, own, other)
    second_rank = np.where(labels == first, other, own)
    wins = {first: first_rank < second_rank, second: second_rank < first_rank}

    def scores(assigned: np.ndarray) -> dict[str, np.ndarray]:
        won = np.where(assigned == first, wins[first], wins[second])
        out = {"all": won.mean(axis=-1)}
        for kind in (first, second):
            mask = assigned == kind
            out[kind] = (won * mask).sum(axis=-1) / np.maximum(mask.sum(axis=-1), 1)
        return out

    rng = np.random.default_rng(seed)
    observed = scores(labels)
    null = scores(np.stack([rng.permutation(labels) for _ in range(n_permutations)]))
    rows = []
    for kind in [k for k in (first, second) if k is not None] + ["all"]:
        rows.append({
            "kind": kind,
            "n_maps": len(labels) if kind == "all" else int((labels == kind).sum()),
            "observed": float(observed[kind]),
            "null_mean": float(null[kind].mean()),
            "p_value": float(empirical_p(null[kind], observed[kind])),
        })
    return pd.DataFrame(rows)
