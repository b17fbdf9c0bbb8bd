"""``niclip-ray evaluate``: score decoder predictions against ground truth with a permutation null,
and/or retrieval (image -> own abstract, text -> map) on a study index's held-out studies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import parse_named_paths
from niclip_ray.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


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
    return "-" if value is None or value != value else f"{value:.3g}"


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


def retrieval_table(evaluation) -> Table:
    """A rich table of a :class:`~niclip_ray.retrieval.evaluation.RetrievalEvaluation`'s headline figures."""
    table = Table(title="Retrieval on the held-out studies", box=box.SIMPLE, pad_edge=False, collapse_padding=True)
    for column in ("measure", "ours", "null / baseline", "p"):
        table.add_column(column, justify="left" if column == "measure" else "right", no_wrap=True)
    found = evaluation.image_to_text
    for key in [k for k in found if k.startswith("recall@") and k.count("_") == 0] + ["median_rank"]:
        table.add_row(f"image->text {key.replace('_', ' ')}", _fmt(found[key]), _fmt(found[f"{key}_null"]),
                      _fmt(found[f"{key}_p"]))
    for row in evaluation.paired_tests.itertuples():
        table.add_row(f"text->map r vs {row.baseline.replace('_', ' ')}", _fmt(row.mean_r_ridge),
                      _fmt(row.mean_r_baseline), _fmt(row.p))
    return table


def evaluate(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the eval-*.csv and retrieval_*.csv files.")],
    predictions: Annotated[
        list[str] | None,
        typer.Option(
            help="Decode output (a dir with decode/part-*.parquet, or a Parquet/CSV file); repeat as "
            "NAME=PATH to compare backends (e.g. niclip=run/ neurosynth=base/ns.parquet).",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="CSV of true labels: 'map_id,level,term' rows, or 'map_id,task,concept,domain' with "
                     "'|'-separated labels (with --predictions)."),
    ] = None,
    index: Annotated[
        Path | None, typer.Option("--index", help="Study index (`index build`): evaluate retrieval on its held-out "
                                  "studies (needs --corpus and --text-features).")
    ] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Corpus of the index (the MKDA maps).")] = None,
    text_features: Annotated[
        Path | None, typer.Option("--text-features", help="Text stage directory the index was built from.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Bundle of the index (default: the one it records).")
    ] = None,
    atlas_dir: Annotated[Path | None, typer.Option("--atlas-dir", help="nilearn data dir with the atlas.")] = None,
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
    With --index: image -> own abstract recall@1/10 and median rank against a permutation
    null, and text -> map Pearson r against the mean training map and the nearest training
    study in raw text space (paired Wilcoxon), written to retrieval_*.csv.

    Example: niclip-ray evaluate --predictions work/decode --truth mapping.csv --out work/eval
    """
    if not predictions and index is None:
        raise InputError("nothing to evaluate: give --predictions with --truth, or --index")
    if predictions:
        if truth is None:
            raise InputError("--predictions needs --truth")
        _evaluate_predictions(ctx, predictions, truth, out_dir, {"task": k_task, "concept": k_concept,
                              "domain": k_domain}, permutations, seed, dataset, meta)
    if index is not None:
        _evaluate_retrieval(ctx, index, corpus, text_features, model, atlas_dir, out_dir, permutations, seed)


def _evaluate_predictions(ctx, predictions, truth, out_dir, k, permutations, seed, dataset, meta) -> None:
    import pandas as pd

    from niclip_ray.evaluation import evaluate as run_evaluation
    from niclip_ray.evaluation import load_predictions, write_results

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
        k=k,
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


def _evaluate_retrieval(ctx, index_dir, corpus, text_features, model, atlas_dir, out_dir, permutations, seed) -> None:
    import json

    from niclip_ray.atomic import write_json
    from niclip_ray.retrieval import Index
    from niclip_ray.retrieval.evaluation import INDEX_EVALUATION, evaluate_retrieval
    from niclip_ray.retrieval.table import INDEX_META

    missing = [flag for flag, value in (("--corpus", corpus), ("--text-features", text_features)) if value is None]
    if missing:
        raise InputError(f"--index needs {' and '.join(missing)}")
    if model is None:
        meta_path = Path(index_dir) / INDEX_META
        recorded = json.loads(meta_path.read_text()).get("bundle") if meta_path.is_file() else None
        if not recorded:
            raise InputError(f"--index {index_dir} records no bundle; give --model")
        model = Path(recorded)
    evaluation = evaluate_retrieval(Index(index_dir, model, atlas_dir=atlas_dir, seed=seed), corpus, text_features,
                                    n_permutations=permutations, seed=seed)
    paths = evaluation.write(out_dir)
    paths.append(write_json(Path(index_dir) / INDEX_EVALUATION, evaluation.record(), indent=2))
    out.print(retrieval_table(evaluation))
    say(f"wrote {', '.join(str(p) for p in paths)}", quiet=options(ctx).quiet)
