"""``niclip-ray embed``: per-study features (images on CPU workers, text on GPU actors).

``niclip-ray embed --corpus DIR --out DIR`` (no sub-command) runs both stages into one
features directory; ``embed images`` and ``embed text`` run one stage each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.atomic import make_dir
from niclip_ray.cli.console import report_stage
from niclip_ray.cli.context import options
from niclip_ray.cli.embed.images import images
from niclip_ray.cli.embed.text import text
from niclip_ray.cli.options import AtlasDirOpt, DimOpt, DtypeOpt, ModelOpt, SectionOpt
from niclip_ray.errors import InputError

app = typer.Typer(help="Compute image and text features of a corpus into Parquet.", invoke_without_command=True)
app.command("images")(images)
app.command("text")(text)


@app.callback()
def both(
    ctx: typer.Context,
    corpus: Annotated[Path | None, typer.Option(help="Corpus directory from 'corpus ingest'.")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Features directory (images/ and text/ inside).")
    ] = None,
    model: ModelOpt = "braingpt-7b-v0.2",
    section: SectionOpt = "body",
    dim: DimOpt = 512,
    atlas_dir: AtlasDirOpt = None,
    dtype: DtypeOpt = "auto",
    standin: Annotated[
        bool, typer.Option("--standin", help="Use the offline stand-in atlas when no real DiFuMo is found.")
    ] = False,
) -> None:
    """Run both feature stages when no sub-command is given.

    Example: niclip-ray --cluster cluster/cluster.yaml embed --corpus /data/corpus --out /data/features
    """
    if ctx.invoked_subcommand is not None:
        return
    if corpus is None or out_dir is None:
        raise InputError("embed needs --corpus and --out (or a sub-command: images, text)")
    from niclip_ray.pipelines import features
    from niclip_ray.runtime import ray_session

    make_dir(out_dir)  # before Ray starts: a file given as --out is refused at once
    opts = options(ctx)
    with ray_session(opts.ray_options()):
        image_summary, text_summary = features.run(
            corpus,
            out_dir,
            image_options={"dim": dim, "atlas_dir": atlas_dir, "allow_standin": standin},
            text_options={"model": model, "section": section, "dtype": dtype},
        )
    failed = []
    for summary in (image_summary, text_summary):
        try:
            report_stage(summary, quiet=opts.quiet)
        except Exception as exc:  # report both stages before failing
            failed.append(exc)
    if failed:
        raise failed[0]
