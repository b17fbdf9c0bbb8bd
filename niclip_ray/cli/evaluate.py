"""``niclip-ray evaluate``: score decoder predictions against ground truth with a permutation null."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.table import Table

from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import parse_named_paths
from niclip_ray.errors import InputError
from niclip_ray.evaluation import evaluate as run_evaluation
from niclip_ray.evaluation import load_predictions, write_results


def parse_sources(values: list[str]) -> dict[str, Path]:
    """Turn ``[NAME=]PATH`` values into ``{backend: path}``.

    A single unnamed source gets the empty name: its own ``backend`` column is kept, or it
    is the ``niclip`` backend. Several unnamed sources are named after their stem.
    """
    if len(values) == 1 and "=" not in values[0]:
        return {"": Path(values[0])}
    return parse_named_paths(values, "--predictions", "backend name", lambda v: Path(v).stem)


def parse_meta(values: list[str]) -> dict[str, str]:
    """Turn ``KEY=VALUE`` values into a dict."""
    meta = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise InputError(f"--meta {value!r}: expected KEY=VALUE")
        meta[key] = text
    return meta


def _fmt(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3g}"


def summary_table(summary: pd.DataFrame, title: str) -> Table:
    """A rich table of the summary rows (one per backend and level)."""
    table = Table(title=title, box=box.SIMPLE, pad_edge=False, collapse_padding=True)
    table.add_column("backend", no_wrap=True)
    table.add_column("level", no_wrap=True)
    for column in ("k", "maps", "R@k", "hit@k", "med.rank", "MRR", "null hit", "p", "chance"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(
            str(row.backend), str(row.level), str(row.k), str(row.n_images), _fmt(row.mean_recall_at_k),
            _fmt(row.mean_hit_at_k), _fmt(row.median_best_rank), _fmt(row.mrr), _fmt(row.null_mean_hit_at_k),
            _fmt(row.p_value_hit_at_k), "above" if row.above_chance is True else "-",
        )
    return table


def evaluate(
    ctx: typer.Context,
    predictions: Annotated[
        list[str],
        typer.Option(
            help="Decode output (a dir with decode/part-*.parquet, or a Parquet/CSV file); repeat as "
            "NAME=PATH to compare backends (e.g. niclip=run/ neurosynth=base/ns.parquet).",
        ),
    ],
    truth: Annotated[
        Path,
        typer.Option(help="CSV of true labels: 'map_id,level,term' rows, or 'map_id,task,concept,domain' with "
                     "'|'-separated labels."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the eval-*.csv files.")],
    k_task: Annotated[int, typer.Option(min=1, help="Cut-off k for tasks.")] = 4,
    k_concept: Annotated[int, typer.Option(min=1, help="Cut-off k for concepts.")] = 4,
    k_domain: Annotated[int, typer.Option(min=1, help="Cut-off k for domains.")] = 2,
    permutations: Annotated[int, typer.Option(min=1, help="Permutations of the null.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the null.")] = 0,
    dataset: Annotated[str, typer.Option(help="Dataset label, used in file names and rows.")] = "",
    meta: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE written in every summary row (model_name, section, ...).")
    ] = None,
) -> None:
    """Score predictions: recall@k, hit@k, median best rank and MRR per level, against a permutation null.

    Writes eval-{dataset}_results.csv (summary), _details.csv (per map) and _per-term.csv.

    Example: niclip-ray evaluate --predictions work/decode --truth mapping.csv --out work/eval
    """
    sources = parse_sources(predictions)
    frames = []
    for name, path in sources.items():
        frame = load_predictions(path)
        if name or "backend" not in frame.columns:
            frame = frame.assign(backend=name or "niclip")
        frames.append(frame)
    result = run_evaluation(
        pd.concat(frames, ignore_index=True),
        truth,
        k={"task": k_task, "concept": k_concept, "domain": k_domain},
        n_permutations=permutations,
        seed=seed,
        dataset=dataset,
        meta=parse_meta(meta or []),
    )
    for row in result.summary.itertuples():
        if row.n_missing:
            err.print(f"warning: {row.backend}/{row.level}: {row.n_missing} labelled map(s) have no valid "
                      "predictions and were not scored", markup=False)
    paths = write_results(result, out_dir, dataset=dataset)
    out.print(summary_table(result.summary, f"Evaluation{' of ' + dataset if dataset else ''}"))
    say(f"wrote {paths['summary']}, {paths['details'].name}, {paths['per_term'].name}", quiet=options(ctx).quiet)
