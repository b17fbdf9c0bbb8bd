"""Score ranked predictions against ground truth, per backend and level, with a permutation null.

:func:`evaluate` returns three tidy tables (summary, per map, per term); :func:`write_results`
saves them as ``eval-{dataset}_results.csv``, ``eval-{dataset}_details.csv`` and
``eval-{dataset}_per-term.csv`` (the reference's column names, plus MRR and the null).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from niclip_ray.atomic import write_csv
from niclip_ray.decoding.schema import CSV_FLOAT_FORMAT, LEVELS
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.evaluation import null as nulls
from niclip_ray.evaluation.metrics import aggregate, map_scores, pair_scores, rank_matrix, truth_matrix
from niclip_ray.evaluation.readers import load_predictions, load_truth

#: Cut-offs of the reference's ``decoding_eval.py``.
DEFAULT_K = {"task": 4, "concept": 4, "domain": 2}
#: Descriptive columns of the reference's ``eval-{ds}_results.csv``, filled from ``meta``.
META_COLUMNS = ("source", "category", "sub_category", "section", "model_id", "model_name", "vocabulary_label")
#: Statistics of a summary row (NaN when no map of the level could be scored).
STAT_COLUMNS = [
    "mean_recall_at_k", "mean_hit_at_k", "median_best_rank", "mrr",
    *[f"{stat}_{name}" for name in ("recall_at_k", "hit_at_k", "mrr")
      for stat in ("null_mean", "null_std", "p_value", "normalized")],
    "above_chance",
]
#: A level's observed score is above chance when it beats the null mean with p at most this.
ALPHA = 0.05


@dataclass
class EvaluationResult:
    """The evaluator's tables.

    Attributes
    ----------
    summary : DataFrame
        One row per backend and level: ``n_images``, ``mean_recall_at_k``, ``mean_hit_at_k``,
        ``median_best_rank``, ``mrr``, their nulls, p-values and normalised scores.
    details : DataFrame
        One row per backend, level and map.
    per_term : DataFrame
        One row per backend, level and true term: hit@k, its null, p-value, MRR.
    """

    summary: pd.DataFrame
    details: pd.DataFrame
    per_term: pd.DataFrame


def _check_k(k: dict[str, int] | None, levels: list[str]) -> dict[str, int]:
    cutoffs = {**DEFAULT_K, **(k or {})}
    for level, value in cutoffs.items():
        if level not in LEVELS:
            raise ParameterError("k", f"has an unknown level {level!r}; expected one of {list(LEVELS)}")
        if int(value) != value or value < 1:
            raise ParameterError("k", f"of level {level} must be a positive integer, got {value!r}")
    return {level: int(cutoffs[level]) for level in levels}


def _null_stats(name: str, observed: float, null: np.ndarray) -> dict[str, float]:
    mean = float(null.mean())
    return {
        f"null_mean_{name}": mean,
        f"null_std_{name}": float(null.std()),
        f"p_value_{name}": float(nulls.empirical_p(null, observed)),
        f"normalized_{name}": float(nulls.normalised(observed, mean)),
    }


def _score_level(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    level: str,
    k: int,
    n_permutations: int,
    seed: int,
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Score one backend at one level; returns the summary row, details and per-term frames."""
    level_truth = truth[truth["level"] == level]
    valid = predictions[predictions["error"].isna() & (predictions["level"] == level)]
    labelled = sorted(set(level_truth["map_id"]))
    map_ids = sorted(set(labelled) & set(valid["map_id"]))
    row = {"level": level, "k": k, "n_images": len(map_ids), "n_missing": len(labelled) - len(map_ids)}
    if not map_ids:
        return row, pd.DataFrame(), pd.DataFrame()
    level_truth = level_truth[level_truth["map_id"].isin(map_ids)]
    valid = valid[valid["map_id"].isin(map_ids)]
    terms = sorted(set(valid["term"]) | set(level_truth["term"]))
    ranks = rank_matrix(valid, map_ids, terms)
    truth_m = truth_matrix(level_truth, map_ids, terms)

    scores = map_scores(truth_m, ranks, k)
    observed = aggregate(scores)
    row.update(observed)
    perms = nulls.permutations(len(map_ids), n_permutations, seed)
    level_null = nulls.summary_null(pair_scores(truth_m, ranks, k), perms)
    for name, column in (("recall_at_k", "mean_recall_at_k"), ("hit_at_k", "mean_hit_at_k"), ("mrr", "mrr")):
        row.update(_null_stats(name, observed[column], level_null[column]))
    row["above_chance"] = bool(
        observed["mean_hit_at_k"] > row["null_mean_hit_at_k"] and row["p_value_hit_at_k"] <= ALPHA
    )

    details = pd.concat([pd.DataFrame({"level": level, "k": k, "prediction_label": map_ids}), scores], axis=1)
    truth_lists = level_truth.groupby("map_id")["term"].apply(list)
    rows = pd.Index(map_ids).get_indexer(valid["map_id"])
    top = valid.assign(effective=ranks[rows, pd.Index(terms).get_indexer(valid["term"])])
    top_lists = top[top["effective"] <= k].groupby("map_id")["term"].apply(list)
    details["true_labels_json"] = [json.dumps(truth_lists.get(m, [])) for m in map_ids]
    details["top_predictions_json"] = [json.dumps(top_lists.get(m, [])) for m in map_ids]

    labelled_terms = truth_m.any(axis=0)
    n_maps = truth_m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_term = (truth_m & (ranks <= k)).sum(axis=0) / n_maps
        mrr_term = np.where(truth_m, 1.0 / ranks, 0.0).sum(axis=0) / n_maps
    term_null = nulls.per_term_null(truth_m, ranks, k, perms)
    null_mean = term_null.mean(axis=0)
    p_values = nulls.empirical_p(term_null, hit_term)
    per_term = pd.DataFrame(
        {
            "level": level,
            "k": k,
            "term": terms,
            "n_images": n_maps,
            "listed": np.isfinite(ranks).any(axis=0),
            "hit_at_k": hit_term,
            "null_mean_hit_at_k": null_mean,
            "null_std_hit_at_k": term_null.std(axis=0),
            "empirical_p_value": p_values,
            "normalized_hit_at_k": nulls.normalised(hit_term, null_mean),
            "above_chance": (hit_term > null_mean) & (p_values <= ALPHA),
            "mrr": mrr_term,
        }
    )[labelled_terms]
    return row, details, per_term.reset_index(drop=True)


def evaluate(
    predictions: str | Path | pd.DataFrame,
    truth: str | Path | pd.DataFrame,
    *,
    k: dict[str, int] | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
    dataset: str = "",
    backend: str = "niclip",
    meta: dict[str, str] | None = None,
) -> EvaluationResult:
    """Score ranked predictions against true labels, with a seeded permutation null.

    Parameters
    ----------
    predictions : path or DataFrame
        Decode-contract predictions (see :func:`~niclip_ray.evaluation.readers.load_predictions`).
        With a ``backend`` column, each backend is scored separately, on the levels it
        predicts (the baselines rank tasks only).
    truth : path or DataFrame
        True labels, long or wide layout (see :func:`~niclip_ray.evaluation.readers.load_truth`).
    k : dict, optional
        Cut-off per level; defaults to :data:`DEFAULT_K` (task 4, concept 4, domain 2).
    n_permutations : int
        Permutations of the null (1,000 in the reference).
    seed : int
        Seed of the null; every backend and level uses the same seed, so backends scored on
        the same maps face the same permutations.
    dataset : str
        Dataset label written in every row.
    backend : str
        Backend label when ``predictions`` has no ``backend`` column.
    meta : dict, optional
        Values for :data:`META_COLUMNS` (model name, vocabulary label, ...), empty by default.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    InputError
        Unreadable or inconsistent inputs, bad ``k``, or no map shared by truth and predictions.
    """
    preds = load_predictions(predictions)
    labels = load_truth(truth)
    if n_permutations < 1:
        raise ParameterError("n_permutations", f"must be at least 1, got {n_permutations}")
    levels = [level for level in LEVELS if level in set(labels["level"])]
    cutoffs = _check_k(k, levels)
    if "backend" not in preds.columns:
        preds = preds.assign(backend=backend)
    preds["backend"] = preds["backend"].astype(str)
    if not set(labels["map_id"]) & set(preds["map_id"]):
        raise InputError(
            "no map_id is shared by the predictions and the truth mapping "
            f"(e.g. predictions {sorted(set(preds['map_id']))[:3]}, truth {sorted(set(labels['map_id']))[:3]})"
        )
    context = {"dataset": dataset, **{c: "" for c in META_COLUMNS}, **(meta or {})}
    rows, details, per_term = [], [], []
    for name, group in preds.groupby("backend", sort=True):
        predicted = set(group.loc[group["error"].isna(), "level"])
        # a backend that predicts some levels only (the baselines: tasks) is scored on those;
        # one whose every row failed keeps all levels, so its failures show as n_missing
        for level in [lvl for lvl in levels if lvl in predicted or not predicted]:
            row, level_details, level_terms = _score_level(group, labels, level, cutoffs[level], n_permutations, seed)
            ids = {**context, "backend": name}
            rows.append({**ids, **row, "n_permutations": n_permutations, "seed": seed})
            details.append(level_details.assign(**ids))
            per_term.append(level_terms.assign(**ids))
    front = [*context, "backend"]
    summary = pd.DataFrame(rows).reindex(
        columns=[*front, "level", "k", "n_images", "n_missing", *STAT_COLUMNS, "n_permutations", "seed"]
    )
    return EvaluationResult(
        summary=summary,
        details=_front(pd.concat(details, ignore_index=True), front),
        per_term=_front(pd.concat(per_term, ignore_index=True), front),
    )


def _front(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Move the identifying columns first (empty frames keep no columns)."""
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame[[*columns, *[c for c in frame.columns if c not in columns]]]


def write_results(result: EvaluationResult, out_dir: str | Path, dataset: str = "") -> dict[str, Path]:
    """Write the three tables as CSV; returns their paths keyed ``summary, details, per_term``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{dataset}" if dataset else "eval"
    paths = {
        "summary": out_dir / f"{stem}_results.csv",
        "details": out_dir / f"{stem}_details.csv",
        "per_term": out_dir / f"{stem}_per-term.csv",
    }
    for key, table in (("summary", result.summary), ("details", result.details), ("per_term", result.per_term)):
        write_csv(paths[key], table, float_format=CSV_FLOAT_FORMAT)
    return paths
