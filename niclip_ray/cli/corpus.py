"""``niclip-ray corpus``: ingest a literature corpus into Parquet and describe it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.corpus import ingest as ingest_corpus
from niclip_ray.corpus import load_corpus

app = typer.Typer(help="Ingest a corpus (studies, texts, peaks) into Parquet.", no_args_is_help=True)


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="nimare:nback_vs_flanker, nimare:neurosynth_laird, a NiMARE Studyset dir or Dataset .json, "
            "a pubget output dir, or a NeuroStore tree."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the corpus Parquet files.")],
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow a NiMARE Dataset .pkl.gz (unpickling runs code; trusted files only).")
    ] = False,
) -> None:
    """Read SOURCE and write studies.parquet, coordinates.parquet and errors.parquet.

    Example: niclip-ray corpus ingest nimare:nback_vs_flanker --out work/corpus
    """
    corpus, summary = ingest_corpus(source, out_dir, allow_pickle=allow_pickle)
    quiet = options(ctx).quiet
    if len(corpus.errors):
        for row in corpus.errors.head(10).itertuples():
            err.print(f"warning: study {row.study_id}: {row.problem} ({row.detail})", markup=False)
        if len(corpus.errors) > 10:
            err.print(f"warning: ... {len(corpus.errors) - 10} more in {out_dir / 'errors.parquet'}", markup=False)
    say(summary.line(), quiet=quiet)


@app.command()
def info(corpus_dir: Annotated[Path, typer.Argument(help="A directory written by 'corpus ingest'.")]) -> None:
    """Describe a corpus directory: counts, labels, spaces and problems."""
    corpus = load_corpus(corpus_dir, require_studies=False)
    studies, coords = corpus.studies, corpus.coordinates
    table = Table(title=f"Corpus {corpus_dir}", show_header=False)
    table.add_row("studies", str(len(studies)))
    table.add_row("with abstract", str(int((studies["abstract"] != "").sum())))
    table.add_row("with body", str(int((studies["body"] != "").sum())))
    table.add_row("peaks", str(len(coords)))
    table.add_row("peaks per study (median)", f"{studies['n_peaks'].median():g}" if len(studies) else "-")
    for space, n in coords["space_in"].value_counts().items():
        table.add_row(f"peaks from {space}", str(n))
    labels = studies["label"][studies["label"] != ""].value_counts()
    for label, n in labels.head(10).items():
        table.add_row(f"label {label}", str(n))
    table.add_row("problems (errors.parquet)", str(len(corpus.errors)))
    out.print(table)
