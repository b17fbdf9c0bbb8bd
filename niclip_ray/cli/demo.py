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
) -> None:
    """Ingest NiMARE's n-back/flanker studyset, embed, train, decode, evaluate, report.

    Everything runs on an embedded local Ray with data that ships with the installed
    packages: real abstracts and peaks, nilearn's real motor map, all-MiniLM-L6-v2.
    """
    from niclip_ray.demo import DemoSettings, run_demo

    opts = options(ctx)
    changes = {k: v for k, v in {"model": model, "atlas_dir": atlas_dir, "dim": dim, "folds": folds,
                                 "epochs": epochs, "permutations": permutations, "seed": seed}.items()
               if v is not None}
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
