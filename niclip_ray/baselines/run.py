"""Fit the baselines and decode maps in one call, writing decode-contract Parquet.

The output directory looks like a decode stage (``decode/part-00000.parquet``, one row per
backend, map and term, with a ``backend`` column), so ``niclip-ray evaluate --predictions
DIR`` scores every baseline at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from niclip_ray.baselines.base import Baseline, MapSource
from niclip_ray.baselines.gclda import GCLDABaseline
from niclip_ray.baselines.neurosynth import NeurosynthBaseline
from niclip_ray.corpus.schema import Corpus
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.tables import write_parquet_atomic

BASELINES: dict[str, type[Baseline]] = {"neurosynth": NeurosynthBaseline, "gclda": GCLDABaseline}


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """Non-empty, stripped lines of a text file (ids, or vocabulary names in order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"{what} file {path} is empty")
    return lines


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Task names from a ``.txt`` (one per line, the reference's format) or a table with a ``name`` column."""
    path = Path(path)
    if path.suffix in (".parquet", ".csv"):
        if not path.is_file():
            raise InputError(f"vocabulary file not found: {path}")
        table = pd.read_parquet(path, columns=None) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        if "name" not in table.columns:
            raise InputError(f"vocabulary table {path} has no 'name' column")
        return [str(name) for name in table["name"]]
    return read_lines(path, "vocabulary")


def run_baselines(
    corpus: str | Path | Corpus,
    train_ids: Sequence[str],
    vocabulary: Sequence[str],
    maps: Mapping[str, MapSource],
    out_dir: str | os.PathLike,
    *,
    methods: Sequence[str] = ("neurosynth", "gclda"),
    params: Mapping[str, Mapping[str, object]] | None = None,
    term_ids: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Fit each baseline on the training split and vocabulary, decode ``maps``, write the rows.

    Parameters
    ----------
    corpus : path or Corpus
        Corpus directory or object.
    train_ids : sequence of str
        Training study ids (the same split NiCLIP was trained on).
    vocabulary : sequence of str
        Task names (the same vocabulary NiCLIP decodes into).
    maps : mapping of map id to NIfTI path or image
    out_dir : path
        Receives ``decode/part-00000.parquet``.
    methods : sequence of str
        Baselines to run, from :data:`BASELINES`.
    params : mapping, optional
        Constructor arguments per method, e.g. ``{"gclda": {"n_topics": 10, "n_iters": 200}}``.
    term_ids : sequence of str, optional
        Cognitive Atlas id of each vocabulary name, in order, for the rows' ``term_id``.

    Returns
    -------
    predictions : DataFrame
        Decode-contract rows of every baseline (``backend`` column).
    path : Path
        The written Parquet file.
    """
    unknown = sorted(set(methods) - set(BASELINES))
    if unknown or not methods:
        raise ParameterError(
            "methods", f"names unknown baseline(s) {unknown or methods}; choose from {', '.join(BASELINES)}"
        )
    params = params or {}
    frames = []
    for method in methods:
        try:
            baseline = BASELINES[method](**params.get(method, {}))
        except TypeError as exc:
            raise InputError(f"bad parameters for baseline {method}: {exc}") from exc
        frames.append(baseline.fit(corpus, train_ids, vocabulary).decode(maps))
    predictions = pd.concat(frames, ignore_index=True)
    if term_ids is not None:
        predictions["term_id"] = predictions["term"].map(dict(zip(vocabulary, term_ids)))
    strings = {name: "string" for name in ("error", "source_path", "term_id", "atlas_id")}
    table = pa.Table.from_pandas(predictions.astype(strings), preserve_index=False)
    path = write_parquet_atomic(table, Path(out_dir) / "decode" / "part-00000.parquet")
    return predictions, path
