"""``niclip-ray baselines``: NiMARE baselines trained on the same split and vocabulary as NiCLIP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import err, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import parse_named_paths

#: The baselines by name, as ``niclip_ray.baselines.run.BASELINES`` holds them; written out
#: so that the CLI starts without importing NiMARE and scikit-learn.
METHODS = ("neurosynth", "gclda")

app = typer.Typer(help="NiMARE baselines (Neurosynth-style correlation decoder, GC-LDA).", no_args_is_help=True)


def parse_maps(values: list[str]) -> dict[str, Path]:
    """``[ID=]PATH`` values to ``{map id: path}``; an unnamed map is named after its file."""
    return parse_named_paths(values, "--map", "map id", lambda v: Path(v).name.removesuffix(".gz").removesuffix(".nii"))


@app.command()
def run(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Option(help="Corpus directory written by 'corpus ingest'.")],
    train_ids: Annotated[Path, typer.Option(help="Text file of training study ids, one per line.")],
    vocabulary: Annotated[
        Path, typer.Option(help="Task names: .txt (one per line) or vocabulary.parquet/.csv with a 'name' column.")
    ],
    maps: Annotated[list[str], typer.Option("--map", help="Map to decode, as PATH or ID=PATH; repeat.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for decode/part-00000.parquet.")],
    method: Annotated[
        list[str] | None, typer.Option(help=f"Baseline to run ({', '.join(METHODS)}); repeat. Default: all.")
    ] = None,
    section: Annotated[str, typer.Option(help="Text section for term counts: abstract, body or all.")] = "abstract",
    frequency_threshold: Annotated[float, typer.Option(help="Neurosynth: min tf-idf of a mentioning study.")] = 0.001,
    gclda_topics: Annotated[int, typer.Option(min=1, help="GC-LDA topics (fewer than training studies).")] = 25,
    gclda_regions: Annotated[int, typer.Option(min=1, help="GC-LDA subregions per topic.")] = 4,
    gclda_iters: Annotated[int, typer.Option(min=1, help="GC-LDA sampling iterations.")] = 1000,
    seed: Annotated[int, typer.Option(help="GC-LDA seed.")] = 1,
) -> None:
    """Fit the baselines on the training studies and vocabulary, and rank the vocabulary for each map.

    Example: niclip-ray baselines run --corpus work/corpus --train-ids train.txt
    --vocabulary vocabulary.txt --map wm=wm.nii.gz --out work/baselines
    """
    from niclip_ray.baselines.run import read_lines, read_vocabulary, run_baselines

    params = {
        "neurosynth": {"section": section, "frequency_threshold": frequency_threshold},
        "gclda": {"section": section, "n_topics": gclda_topics, "n_regions": gclda_regions, "n_iters": gclda_iters,
                  "seed": seed},
    }
    predictions, path = run_baselines(
        corpus,
        read_lines(train_ids, "training ids"),
        read_vocabulary(vocabulary),
        parse_maps(maps),
        out_dir,
        methods=method or list(METHODS),
        params=params,
    )
    quiet = options(ctx).quiet
    for backend, rows in predictions.groupby("backend", sort=True):
        failed = rows[rows["error"].notna()]
        for row in failed.itertuples():
            err.print(f"warning: {backend}: {row.error}", markup=False)
        n_ok = rows.loc[rows["error"].isna(), "map_id"].nunique()
        say(f"{backend}: {n_ok} map(s) decoded, {len(failed)} failed", quiet=quiet)
    say(f"wrote {path}", quiet=quiet)
