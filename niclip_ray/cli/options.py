"""What the CLI shares between command modules: option types, and parameter names mapped to flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.defaults import RANK_BY
from niclip_ray.errors import InputError, ParameterError

CorpusOpt = Annotated[Path, typer.Option("--corpus", help="Corpus directory from 'corpus ingest'.")]
StageOutOpt = Annotated[Path, typer.Option("--out", help="Stage directory for part-NNNNN.parquet (resumable).")]
AtlasDirOpt = Annotated[
    Path | None, typer.Option("--atlas-dir", help="nilearn data directory holding difumo_atlases/ (real or stand-in).")
]
DimOpt = Annotated[int, typer.Option("--dim", help="DiFuMo components.")]
SectionOpt = Annotated[
    str, typer.Option(help="Text section: abstract, body, title, keywords or title+keywords (title and top keywords).")
]
StudyShardOpt = Annotated[int, typer.Option("--shard-size", min=1, help="Studies per part file.")]
def _top_k(value: str | int) -> int | None:
    if str(value).strip().lower() == "all":
        return None
    try:
        k = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a whole number nor 'all'") from None
    if k < 1:
        raise typer.BadParameter(f"must be at least 1 (or 'all'), got {k}")
    return k


def parse_logit_scale(value: str | float) -> float:
    """``--logit-scale``: a finite number above 0, at most :data:`~niclip_ray.model.bundle.MAX_LOGIT_SCALE`."""
    from niclip_ray.model.bundle import logit_scale_problem

    try:
        scale = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    problem = logit_scale_problem(scale)
    if problem:
        raise typer.BadParameter(problem)
    return scale


def parse_rank_by(value: str) -> str:
    """``--rank-by``: posterior, bayes-factor or likelihood (:func:`niclip_ray.decoding.ranking.parse_rank_by`)."""
    from niclip_ray.decoding.ranking import parse_rank_by as parse

    try:
        return parse(value)
    except ParameterError as exc:
        raise typer.BadParameter(exc.problem) from None


RankByOpt = Annotated[
    str,
    typer.Option(
        "--rank-by",
        parser=parse_rank_by,
        metavar="|".join(name.replace("_", "-") for name in RANK_BY),
        help="Order each map's tasks by posterior (the paper's), Bayes factor (the map's evidence, apart from "
        "the prior) or likelihood (the map alone). Concepts and domains keep their posterior order.",
    ),
]
TopKOpt = Annotated[
    int | None,
    typer.Option("--topk", "--top-k", parser=_top_k, metavar="K|all", help="Tasks and concepts kept per map, or all."),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Preset (braingpt-7b-v0.2, mistral-7b-v0.1, llama-2-7b-chat, braingpt-7b-v0.1), packaged model "
        "(smollm2-135m, all-minilm-l6-v2), local model/adapter dir or .gguf, or a cached HF repo id.",
    ),
]
BaseModelOpt = Annotated[
    str | None, typer.Option(help="Base model of a LoRA adapter (overrides the preset's or the adapter's).")
]
MaxLengthOpt = Annotated[
    int | None, typer.Option(min=1, help="Tokens per window (default: the preset's, else the model's positions).")
]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Windows per forward pass.")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16.")]

def parse_named_paths(values: list[str], flag: str, what: str, default_name) -> dict[str, Path]:
    """``[NAME=]PATH`` option values to ``{name: path}``.

    Parameters
    ----------
    values : list of str
        The option's values, as typed.
    flag : str
        The option (``--map``), named in errors.
    what : str
        What a name is (``map id``), named in errors.
    default_name : callable
        Name of an unnamed ``PATH``.
    """
    named: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = default_name(value), value
        if not name or not path:
            raise InputError(f"{flag} {value!r}: expected PATH or {what.split()[-1].upper()}=PATH")
        if name in named:
            raise InputError(f"{flag}: {what} {name!r} is given twice")
        named[name] = Path(path)
    return named


#: Parameters whose flag is not the parameter's own name with dashes.
FLAGS = {
    "query": "QUERY",
    "n_folds": "--folds",
    "data_dir": "--atlas-dir",
    "out_dir": "--out",
    "n_permutations": "--permutations",
    "methods": "--method",
    "n_topics": "--gclda-topics",
    "n_regions": "--gclda-regions",
    "n_iters": "--gclda-iters",
}


def flag_for(param: str) -> str:
    """The command-line flag of the core parameter ``param`` (``text_features`` -> ``--text-features``)."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def user_message(exc: BaseException) -> str:
    """The one line shown for an error, with a named parameter shown as its flag."""
    if isinstance(exc, ParameterError):
        return f"{flag_for(exc.param)} {exc.problem}"
    return str(exc)
FailOnErrorOpt = Annotated[
    bool, typer.Option("--fail-on-error", help="Exit 1 when any map or study failed (finished work is kept).")
]
