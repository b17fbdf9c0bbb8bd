"""``niclip-ray demo``: the whole pipeline on shipped real data, ending in an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import ItemProgress, out, say
from niclip_ray.cli.context import options


def demo(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Working directory; a rerun reuses finished stages.")]
    = Path("work/demo"),
    quick: Annotated[bool, typer.Option(help="Reduced mode (60 studies, DiFuMo-64 stand-in, 3 short folds).")]
    = False,
    model: Annotated[
        str | None,
        typer.Option(help="Text model: packaged (default all-minilm-l6-v2; smollm2-135m), local path or cached HF id."),
    ] = None,
    atlas_dir: Annotated[
        Path | None, typer.Option(help="nilearn data dir with a real DiFuMo cache (default: offline stand-in).")
    ] = None,
    dim: Annotated[int | None, typer.Option(help="DiFuMo components (default 512; 64 with --quick).")] = None,
    folds: Annotated[int | None, typer.Option(min=2, help="Cross-validation folds (default 5; 3 with --quick).")]
    = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs per fold (default 50).")] = None,
    permutations: Annotated[int | None, typer.Option(min=10, help="Permutations of the nulls (default 1000).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the subset, splits, training and nulls.")] = 0,
    full: Annotated[bool, typer.Option(
        "--full", help="The real-scale run: Neurosynth + NeuroQuery and the full Cognitive Atlas (needs --data-dir).")]
    = False,
    data_dir: Annotated[Path | None, typer.Option(
        help="With --full: a folder holding nimare/ (NiMARE's data dir; fetched when online) and "
             "cognitive_atlas/ (the JSON export; else the live API).")] = None,
    max_studies: Annotated[int | None, typer.Option(min=100, help="With --full: a seeded subsample of the corpus.")]
    = None,
    sections: Annotated[str | None, typer.Option(
        help="With --full: the text sections to train on, comma-separated (default title,title+keywords).")]
    = None,
) -> None:
    """Ingest NiMARE's n-back/flanker studyset, embed, train, decode, evaluate, report.

    Everything runs on an embedded local Ray with data that ships with the installed
    packages: real abstracts and peaks, nilearn's real motor map, all-MiniLM-L6-v2.
    With --full, the real-scale run on Neurosynth + NeuroQuery, judged on the n-back/flanker
    studies held out of training.
    """
    from niclip_ray.demo import DemoSettings, run_demo

    opts = options(ctx)
    changes = {k: v for k, v in {"model": model, "atlas_dir": atlas_dir, "dim": dim, "folds": folds,
                                 "epochs": epochs, "permutations": permutations, "seed": seed}.items()
               if v is not None}
    if full:
        if sections is not None:
            changes["sections"] = parse_sections(sections)
        _full(ctx, out_dir, data_dir, quick, max_studies, changes)
        return
    if data_dir is not None or max_studies is not None or sections is not None:
        raise typer.BadParameter("--data-dir, --max-studies and --sections go with --full")
    settings = DemoSettings.quick(out_dir, **changes) if quick else DemoSettings(out_dir=out_dir, **changes)
    result = run_demo(settings, say=lambda line: say(line, quiet=opts.quiet), ray_options=opts.ray_options(),
                      progress=lambda label, total, unit: ItemProgress(label, total, unit, quiet=opts.quiet,
                                                                       every_s=2.0))

    table = Table(title="NiCLIP vs baselines (hit@k, permutation null)")
    for column in ("backend", "level", "k", "hit@k", "null", "p", "recall@k", "MRR"):
        table.add_column(column)
    for row in result.summary.itertuples():
        table.add_row(row.backend, row.level, str(row.k), f"{row.mean_hit_at_k:.3f}", f"{row.null_mean_hit_at_k:.3f}",
                      f"{row.p_value_hit_at_k:.3f}", f"{row.mean_recall_at_k:.3f}", f"{row.mrr:.3f}")
    out.print(table)
    known = Table(title="Known answer: own task ranked above the other label's task")
    for column in ("backend", "maps", "observed", "null", "p"):
        known.add_column(column)
    for row in result.known_answer[result.known_answer["kind"] == "all"].itertuples():
        known.add_row(row.backend, str(row.n_maps), f"{row.observed:.3f}", f"{row.null_mean:.3f}",
                      f"{row.p_value:.3f}")
    out.print(known)
    out.print(f"report: {result.report.resolve()}")
    say(FULL_RUN_HINT, quiet=opts.quiet)


#: The closing line of the small demo: where the real-scale run is.
FULL_RUN_HINT = (
    "This demo trains on 230 abstracts. The real-scale run (Neurosynth + NeuroQuery, 19k studies, the full "
    "Cognitive Atlas, judged on held-out maps): niclip-ray demo --full --data-dir DIR; README, "
    "'Full-scale run on real data', says how to get the data."
)


def parse_sections(text: str) -> tuple[str, ...]:
    """The real-scale run's text sections from ``title,title+keywords``, in the order given, each once."""
    from niclip_ray.full_run import SECTIONS

    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in SECTIONS]
    if not chosen or unknown:
        raise typer.BadParameter(f"--sections takes {' and/or '.join(SECTIONS)}, comma-separated; got {text!r}")
    return chosen


def _full(ctx: typer.Context, out_dir: Path, data_dir: Path | None, quick: bool, max_studies: int | None,
          changes: dict) -> None:
    """Run the real-scale pipeline and print its held-out tables."""
    from niclip_ray.full_run import FullSettings, run_full

    if data_dir is None:
        raise typer.BadParameter("--full needs --data-dir (a folder holding nimare/ and cognitive_atlas/)")
    opts = options(ctx)
    if out_dir == Path("work/demo"):
        out_dir = Path("work/full")
    if max_studies is not None:
        changes["max_studies"] = max_studies
    make = FullSettings.subsample if quick else FullSettings
    settings = make(out_dir=out_dir, data_dir=data_dir, **changes)
    result = run_full(settings, say=lambda line: say(line, quiet=opts.quiet), ray_options=opts.ray_options(),
                      progress=lambda label, total, unit: ItemProgress(label, total, unit, quiet=opts.quiet,
                                                                       every_s=5.0))
    for key, table in result.headline.items():
        view = Table(title=f"Held-out maps ({key}): task level")
        columns = ["backend", "label", "n_maps", "median_best_rank", "median_best_rank null", "hit@10",
                   "hit@10 null", "hit@10 p", "mrr", "two-way", "two-way p"]
        columns = [c for c in columns if c in table]
        for column in columns:
            view.add_column(column)
        for row in table[columns].itertuples(index=False):
            view.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
        out.print(view)
    out.print(f"report: {result.report.resolve()}")
