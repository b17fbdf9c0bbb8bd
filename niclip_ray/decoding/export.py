"""Decoding results as the reference's CSV tables, and a short text summary per map."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_csv
from niclip_ray.decoding.schema import CSV_FLOAT_FORMAT


def reference_tables(result: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One map's tidy result as the reference's tables, keyed by level.

    ``task``: ``pred, prob, similarity, likelihood, prior_prob, joint_prob, bayes_factor``;
    ``concept`` and ``domain`` (the reference's "process"): ``pred, prob``.
    """
    tables = {}
    for level, rows in result.sort_values(["level", "rank"]).groupby("level", sort=False):
        if level == "task":
            tables[level] = pd.DataFrame(
                {
                    "pred": rows["term"].to_numpy(),
                    "prob": rows["prob"].to_numpy(),
                    "similarity": rows["similarity"].to_numpy(),
                    "likelihood": rows["likelihood"].to_numpy(),
                    "prior_prob": rows["prior"].to_numpy(),
                    "joint_prob": (rows["likelihood"] * rows["prior"]).to_numpy(),
                    "bayes_factor": rows["bayes_factor"].to_numpy(),
                }
            )
        else:
            tables[level] = pd.DataFrame({"pred": rows["term"].to_numpy(), "prob": rows["prob"].to_numpy()})
    return tables


def safe_name(map_id: str) -> str:
    """A file-name-safe version of a map id (``collection_1/image_2:0`` -> ``collection_1_image_2-0``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", map_id.replace(":", "-")).strip("_") or "map"


def unique_names(map_ids: list[str]) -> dict[str, str]:
    """A distinct :func:`safe_name` per map id: ids whose safe names collide get ``-<sha1[:8]>`` of the id."""
    names = {map_id: safe_name(map_id) for map_id in map_ids}
    taken = Counter(name.lower() for name in names.values())  # case-insensitive file systems too
    return {
        map_id: name if taken[name.lower()] == 1 else f"{name}-{hashlib.sha1(map_id.encode()).hexdigest()[:8]}"
        for map_id, name in names.items()
    }


def write_csvs(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``{map}_{level}_predictions.csv`` for every decoded map (rows without error).

    Maps whose names collide once made file-safe (``a/m`` and ``a_m``) are told apart by
    :func:`unique_names`, so every map keeps its own files.

    Returns
    -------
    list of Path
        Files written, sorted; one per map and level.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = results[results["error"].fillna("") == ""] if "error" in results.columns else results
    names = unique_names(sorted({str(m) for m in ok["map_id"]}))
    written = []
    for map_id, rows in ok.groupby("map_id", sort=True):
        for level, table in reference_tables(rows).items():
            path = out_dir / f"{names[str(map_id)]}_{level}_predictions.csv"
            write_csv(path, table, float_format=CSV_FLOAT_FORMAT)
            written.append(path)
    return sorted(written)
