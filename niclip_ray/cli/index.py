"""``niclip-ray index``: the study index of a corpus under a model bundle (for ``search``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import report_stage, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import CorpusOpt, StudyShardOpt

app = typer.Typer(help="Study index: every study's image and text latents, for search.", no_args_is_help=True)


@app.command()
def build(
    ctx: typer.Context,
    corpus: CorpusOpt,
    features: Annotated[Path, typer.Option("--features", help="Directory holding the images/ and text/ stages.")],
    model: Annotated[Path, typer.Option("--model", help="Model bundle directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Index directory (part-NNNNN.parquet, index.json; resumable).")],
    shard_size: StudyShardOpt = 1024,
    num_actors: Annotated[int | None, typer.Option("--num-actors", min=1, help="Actors (default: per CPU).")] = None,
) -> None:
    """Encode every study's features with the bundle's heads into a searchable index.

    Writes OUT/part-NNNNN.parquet (study_id, pmid, title, fold, image_latent, text_latent,
    coefficients, error) and OUT/index.json. The text features must come from the bundle's
    text model. A rerun resumes.

    Example: niclip-ray index build --corpus work/corpus --features work/features
    --model work/train/bundle --out work/index
    """
    from niclip_ray.pipelines import index as stage
    from niclip_ray.runtime import ray_session

    opts = options(ctx)
    with ray_session(opts.ray_options()):
        summary = stage.run(corpus, features, model, out_dir, shard_size=shard_size, num_actors=num_actors)
    report_stage(summary, quiet=opts.quiet)
    say(f"index: {summary.n_ok_rows} studies searchable -> {out_dir}", quiet=opts.quiet)
