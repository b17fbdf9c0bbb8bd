"""``niclip-ray embed text``: pooled LLM embeddings of one text section of every study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import report_stage, shard_progress
from niclip_ray.cli.context import options
from niclip_ray.features.text import DEFAULT_MAX_TOKENS
from niclip_ray.pipelines import text as text_stage
from niclip_ray.runtime import ray_session

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


def text(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus directory from 'corpus ingest'.")],
    model: ModelOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Stage directory for part-NNNNN.parquet (resumable).")],
    section: Annotated[str, typer.Option(help="Text section: abstract or body.")] = "body",
    base_model: BaseModelOpt = None,
    max_length: MaxLengthOpt = None,
    batch_size: BatchSizeOpt = text_stage.DEFAULT_BATCH_SIZE,
    dtype: DtypeOpt = "auto",
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Texts with more tokens get an error row.")
    ] = DEFAULT_MAX_TOKENS,
    num_actors: Annotated[int | None, typer.Option(min=1, help="Actors (default: one per GPU, else one).")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Studies per part file.")] = text_stage.DEFAULT_SHARD_SIZE,
) -> None:
    """Embed each study's abstract or body: mean last hidden state over max-length windows.

    Example: niclip-ray embed text --corpus work/corpus --section body --model braingpt-7b-v0.2
    --out work/features/text
    """
    opts = options(ctx)

    with ray_session(opts.ray_options()):
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
            on_shard=shard_progress("studies", quiet=opts.quiet),
        )
    report_stage(summary, quiet=opts.quiet)
