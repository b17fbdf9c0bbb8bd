"""``niclip-ray corpus``: ingest a literature corpus into Parquet and describe it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.errors import InputError, ParameterError

app = typer.Typer(help="Ingest a corpus (studies, texts, peaks) into Parquet.", no_args_is_help=True)


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="neurosynth, neuroquery or neurosynth+neuroquery (NiMARE's fetched files, see --data-dir), "
            "nimare:nback_vs_flanker, nimare:neurosynth_laird, a NiMARE Studyset dir or Dataset .json, "
            "a pubget output dir, or a NeuroStore tree."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the corpus Parquet files.")],
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow a NiMARE Dataset .pkl.gz (unpickling runs code; trusted files only).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="For neurosynth / neuroquery: NiMARE's data directory, holding neurosynth/ and neuroquery/ "
            "(default: NiMARE's, $NIMARE_DATA or ~/.nimare). Missing files are downloaded into it."
        ),
    ] = None,
) -> None:
    """Read SOURCE and write studies.parquet, coordinates.parquet and errors.parquet.

    Example: niclip-ray corpus ingest nimare:nback_vs_flanker --out work/corpus
    """
    from niclip_ray.corpus import ingest as ingest_corpus

    try:
        corpus, summary = ingest_corpus(source, out_dir, allow_pickle=allow_pickle, data_dir=data_dir)
    except ParameterError as exc:  # FLAGS maps data_dir to --atlas-dir, the other commands' flag
        if exc.param != "data_dir":
            raise
        raise InputError(f"--data-dir {exc.problem}") from exc
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
    from niclip_ray.corpus import load_corpus

    corpus = load_corpus(corpus_dir, require_studies=False)
    studies, coords = corpus.studies, corpus.coordinates
    table = Table(title=f"Corpus {corpus_dir}", show_header=False)
    table.add_row("studies", str(len(studies)))
    table.add_row("with abstract", str(int((studies["abstract"] != "").sum())))
    table.add_row("with body", str(int((studies["body"] != "").sum())))
    table.add_row("with title", str(int((studies["title"] != "").sum())))
    table.add_row("with keywords", str(int((studies["keywords"] != "").sum())))
    table.add_row("peaks", str(len(coords)))
    table.add_row("peaks per study (median)", f"{studies['n_peaks'].median():g}" if len(studies) else "-")
    for space, n in coords["space_in"].value_counts().items():
        table.add_row(f"peaks from {space}", str(n))
    for database, n in studies["peaks_from"][studies["peaks_from"] != ""].value_counts().items():
        table.add_row(f"studies with peaks from {database}", str(n))
    labels = studies["label"][studies["label"] != ""].value_counts()
    for label, n in labels.head(10).items():
        table.add_row(f"label {label}", str(n))
    table.add_row("problems (errors.parquet)", str(len(corpus.errors)))
    out.print(table)
