"""``niclip-ray embed images``: MKDA + DiFuMo features of every study of a corpus."""

from __future__ import annotations

from typing import Annotated

import typer

from niclip_ray.atomic import make_dir
from niclip_ray.cli.console import PLAIN_EVERY_S, ItemProgress, err, fail_if_any_failed, report_failures, report_stage
from niclip_ray.cli.context import options
from niclip_ray.cli.options import AtlasDirOpt, CorpusOpt, DimOpt, FailOnErrorOpt, StageOutOpt, StudyShardOpt
from niclip_ray.defaults import IMAGES_SHARD_SIZE


def images(
    ctx: typer.Context,
    corpus: CorpusOpt,
    out_dir: StageOutOpt,
    atlas_dir: AtlasDirOpt = None,
    dim: DimOpt = 512,
    shard_size: StudyShardOpt = IMAGES_SHARD_SIZE,
    num_actors: Annotated[int | None, typer.Option(min=1, help="CPU actors (default: one per CPU).")] = None,
    standin: Annotated[
        bool,
        typer.Option("--standin/--no-standin", help="Use the offline stand-in atlas when no real DiFuMo is found."),
    ] = False,
    fail_on_error: FailOnErrorOpt = False,
) -> None:
    """Project each study's MKDA map (10 mm spheres) on DiFuMo by least squares.

    Example: niclip-ray embed images --corpus work/corpus --out work/features/images --dim 512
    """
    from niclip_ray.atlas.difumo import load_atlas
    from niclip_ray.pipelines import images as images_stage
    from niclip_ray.runtime import ray_session

    opts = options(ctx)
    make_dir(out_dir)  # before Ray starts: a file given as --out is refused at once
    atlas = load_atlas(dim, data_dir=atlas_dir, allow_standin=standin)
    if atlas.standin:
        err.print(
            f"warning: using the offline stand-in atlas {atlas.atlas_id} ({atlas.data_dir}), not DiFuMo; "
            "point --atlas-dir at a nilearn DiFuMo cache for the real atlas",
            markup=False,
        )
    with ray_session(opts.ray_options()), ItemProgress("images", 0, "studies", quiet=opts.quiet,
                                                       every_s=PLAIN_EVERY_S) as progress:
        summary = images_stage.run(
            corpus,
            out_dir,
            dim=dim,
            atlas_dir=atlas_dir,
            shard_size=shard_size,
            num_actors=num_actors,
            allow_standin=standin,
            on_items=progress.on_items,
        )
    report_stage(summary, quiet=opts.quiet)
    report_failures(summary, out_dir, "studies")
    if fail_on_error:
        fail_if_any_failed(summary, "studies")
