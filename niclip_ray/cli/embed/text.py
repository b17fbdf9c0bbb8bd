"""``niclip-ray embed text``: pooled LLM embeddings of one text section of every study."""

from __future__ import annotations

from typing import Annotated

import typer

from niclip_ray.atomic import make_dir
from niclip_ray.cli.console import PLAIN_EVERY_S, ItemProgress, fail_if_any_failed, report_failures, report_stage
from niclip_ray.cli.context import options
from niclip_ray.cli.options import (
    BaseModelOpt,
    BatchSizeOpt,
    CorpusOpt,
    DtypeOpt,
    FailOnErrorOpt,
    MaxLengthOpt,
    ModelOpt,
    SectionOpt,
    StageOutOpt,
    StudyShardOpt,
)
from niclip_ray.defaults import MAX_TOKENS, TEXT_BATCH_SIZE, TEXT_SHARD_SIZE


def text(
    ctx: typer.Context,
    corpus: CorpusOpt,
    model: ModelOpt,
    out_dir: StageOutOpt,
    section: SectionOpt = "body",
    base_model: BaseModelOpt = None,
    max_length: MaxLengthOpt = None,
    batch_size: BatchSizeOpt = TEXT_BATCH_SIZE,
    dtype: DtypeOpt = "auto",
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Texts with more tokens get an error row.")
    ] = MAX_TOKENS,
    num_actors: Annotated[int | None, typer.Option(min=1, help="Actors (default: one per GPU, else one).")] = None,
    shard_size: StudyShardOpt = TEXT_SHARD_SIZE,
    fail_on_error: FailOnErrorOpt = False,
) -> None:
    """Embed each study's abstract or body: mean last hidden state over max-length windows.

    Example: niclip-ray embed text --corpus work/corpus --section body --model braingpt-7b-v0.2
    --out work/features/text
    """
    from niclip_ray.pipelines import text as text_stage
    from niclip_ray.runtime import ray_session

    opts = options(ctx)
    make_dir(out_dir)  # before Ray starts: a file given as --out is refused at once
    with ray_session(opts.ray_options()), ItemProgress("text", 0, "studies", quiet=opts.quiet,
                                                       every_s=PLAIN_EVERY_S) as progress:
        summary = text_stage.run(
            corpus,
            out_dir,
            model=model,
            section=section,
            base_model=base_model,
            max_length=max_length,
            batch_size=batch_size,
            dtype=dtype,
            max_tokens=max_tokens,
            num_actors=num_actors,
            shard_size=shard_size,
            on_items=progress.on_items,
        )
    report_stage(summary, quiet=opts.quiet)
    report_failures(summary, out_dir, "studies")
    if fail_on_error:
        fail_if_any_failed(summary, "studies")
