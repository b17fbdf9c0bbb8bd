"""Decode frames and search tables -> the JSON of ``POST /v1/decode`` and ``/v1/search/*``."""

from __future__ import annotations

import math

import pandas as pd

LEVELS = ("task", "concept", "domain")
_TERM_FIELDS = ("rank", "term_id", "term", "prob", "similarity", "likelihood", "prior", "bayes_factor", "against_map",
                "hub")


def parse_levels(text: str, hierarchical: bool) -> list[str]:
    """The levels a request asks for (comma-separated), only ``task`` when not hierarchical.

    Raises
    ------
    ValueError
        For a level other than task, concept and domain.
    """
    levels = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels must be a comma-separated subset of {','.join(LEVELS)}, got {text!r}")
    return [level for level in LEVELS if level in levels and (hierarchical or level == "task")]


def _number(value):
    return None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def decode_response(frame: pd.DataFrame, levels: list[str], top_k: int, checks: dict, model: dict) -> dict:
    """The response body: per level the ranked terms, the map's checks, the model's identity.

    Tasks and concepts are cut at ``top_k``; every domain is kept, as the decoder does.

    ``frame`` is one map's :meth:`~niclip_ray.decoding.decoder.Decoder.decode_features`
    output with every term ranked; terms keep its order. Concept and domain terms have
    null similarity, likelihood, prior, Bayes factor and ``against_map``; ``hub`` is null
    (a request is one map, and a batch mixes clients' maps).
    """
    results = {}
    for level in levels:
        rows = frame[frame["level"] == level].sort_values("rank")
        if level != "domain":
            rows = rows[rows["rank"] <= top_k]
        results[level] = [
            {name: _number(value.item() if hasattr(value, "item") else value) for name, value in zip(_TERM_FIELDS, row)}
            for row in rows[list(_TERM_FIELDS)].itertuples(index=False)
        ]
    return {"results": results, "map": checks, "model": model}


def search_response(table: pd.DataFrame, against: str) -> dict:
    """The studies of a search, best first: ids, title, whether the bundle trained on it, and score (no paths)."""
    studies = [{"rank": int(row.rank), "study_id": str(row.study_id), "pmid": str(row.pmid), "doi": str(row.doi),
                "title": str(row.title), "in_training": bool(row.in_training), "score": float(row.score)}
               for row in table.itertuples(index=False)]
    return {"against": against, "studies": studies}
