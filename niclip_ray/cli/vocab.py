"""``niclip-ray vocab``: embed the Cognitive Atlas task vocabulary and compute its prior."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from niclip_ray.cli.console import out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import BaseModelOpt, BatchSizeOpt, DtypeOpt, MaxLengthOpt, ModelOpt
from niclip_ray.defaults import TEXT_BATCH_SIZE
from niclip_ray.errors import InputError

app = typer.Typer(help="Task vocabulary: name/definition embeddings and the prior.", no_args_is_help=True)


def read_id_file(path: Path) -> list[str]:
    """Study ids, one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --train-ids {path}: {exc}") from exc
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise InputError(f"--train-ids {path} lists no study ids")
    return ids


@app.command()
def build(
    ctx: typer.Context,
    model: ModelOpt,
    text_features: Annotated[
        Path, typer.Option("--text-features", help="Text stage directory ('embed text') of the same model.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Output vocabulary.parquet.")],
    ontology: Annotated[str, typer.Option(help="'builtin' or an ontology directory.")] = "builtin",
    full: Annotated[bool, typer.Option("--full", help="Full task set of a reference or export directory (default: reduced).")] = False,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="combined = alpha*names + (1-alpha)*definitions.")] = 0.5,
    prior_scale: Annotated[float, typer.Option(help="Scale of the cosines in the prior's softmax.")] = 10.0,
    prior_from: Annotated[str, typer.Option(help="Task embedding used by the prior: combined, names, definitions.")] = "combined",
    train_ids: Annotated[
        Path | None, typer.Option(help="File of training study ids, one per line (default: all documents).")
    ] = None,
    base_model: BaseModelOpt = None,
    max_length: MaxLengthOpt = None,
    batch_size: BatchSizeOpt = TEXT_BATCH_SIZE,
    dtype: DtypeOpt = "auto",
) -> None:
    """Embed task names and definitions, combine them, and compute the prior over the documents.

    Example: niclip-ray vocab build --ontology builtin --model braingpt-7b-v0.2
    --text-features work/features/text --out work/vocabulary.parquet
    """
    from niclip_ray.ontology import load_ontology
    from niclip_ray.pipelines import vocab as vocab_stage
    from niclip_ray.runtime import ray_session

    opts = options(ctx)
    tasks = load_ontology(ontology, reduced=not full).tasks
    ids = read_id_file(train_ids) if train_ids is not None else None
    with ray_session(opts.ray_options()):
        result = vocab_stage.run(
            tasks,
            text_features,
            model=model,
            base_model=base_model,
            max_length=max_length,
            batch_size=batch_size,
            dtype=dtype,
            alpha=alpha,
            prior_scale=prior_scale,
            prior_from=prior_from,
            train_ids=ids,
        )
    result.provenance["ontology"] = ontology
    result.write(out_path)
    p = result.provenance
    say(
        f"vocab: {len(result.vocabulary)} tasks, prior over {p['n_documents']} {p['section']} documents "
        f"({p['n_failed_documents_excluded']} failed left out), model {p['model_id']} -> {out_path}",
        quiet=opts.quiet,
    )


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A vocabulary.parquet.")],
    top: Annotated[int, typer.Option(min=1, help="Terms with the highest prior to list.")] = 10,
) -> None:
    """Describe a vocabulary: size, embedding widths, provenance and the top prior terms."""
    from niclip_ray.model.vocabulary import (
        EMBEDDING_COLUMNS,
        available_embeddings,
        read_vocabulary,
        read_vocabulary_provenance,
    )

    vocabulary = read_vocabulary(path)
    table = Table(title=f"Vocabulary {path}", show_header=False)
    table.add_row("terms", str(len(vocabulary)))
    for kind in available_embeddings(vocabulary):
        table.add_row(f"{kind} embeddings", f"{len(vocabulary[EMBEDDING_COLUMNS[kind]].iloc[0])}-d")
    prior = vocabulary["prior"].to_numpy()
    table.add_row("prior sum", f"{prior.sum():.6f}")
    for key, value in read_vocabulary_provenance(path).items():
        table.add_row(key, str(value))
    out.print(table)
    ranked = Table(title=f"Top {min(top, len(vocabulary))} prior terms")
    for column in ("rank", "term_id", "name", "prior"):
        ranked.add_column(column)
    for rank, i in enumerate(np.argsort(-prior, kind="stable")[:top], start=1):
        ranked.add_row(str(rank), vocabulary["term_id"].iloc[i], vocabulary["name"].iloc[i], f"{prior[i]:.5f}")
    out.print(ranked)
