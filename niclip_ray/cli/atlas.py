"""``niclip-ray atlas``: which DiFuMo atlases are on disk, and the offline stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.atlas.cache import default_data_dirs, find_difumo
from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.console import out, say
from niclip_ray.cli.context import options
from niclip_ray.errors import InputError

app = typer.Typer(help="DiFuMo atlases: list what is on disk, build the offline stand-in.", no_args_is_help=True)


@app.command()
def info(
    atlas_dir: Annotated[
        list[Path] | None, typer.Option(help="nilearn data directory to search (repeatable).")
    ] = None,
) -> None:
    """List DiFuMo atlases found in nilearn data directories and the stand-in cache.

    Example: niclip-ray atlas info --atlas-dir ~/nilearn_data
    """
    for directory in atlas_dir or []:
        if not directory.is_dir():
            raise InputError(f"--atlas-dir {directory} does not exist")
    dirs = list(atlas_dir) if atlas_dir else default_data_dirs() + [default_standin_dir(0)]
    found = find_difumo(dirs)
    if not found:
        out.print(f"no DiFuMo atlas in {', '.join(map(str, dirs))}")
        return
    for cache in found:
        maps = cache.data_dir / "difumo_atlases" / str(cache.dim) / "2mm" / "maps.nii.gz"
        kind = "STAND-IN (not DiFuMo)" if cache.standin else "real DiFuMo"
        out.print(f"{cache.atlas_id}\t{cache.dim} components\t{kind}\t{maps}", markup=False)


@app.command("build-standin")
def build_standin_command(
    ctx: typer.Context,
    dim: Annotated[int, typer.Option("--dim", help="Components: 64, 128, 256, 512 or 1024.")],
    out_dir: Annotated[Path, typer.Option("--out", help="nilearn data directory to write difumo_atlases/ into.")],
    seed: Annotated[int, typer.Option(help="Seed of the k-means centres and amplitudes.")] = 0,
) -> None:
    """Build the deterministic stand-in atlas in nilearn's DiFuMo layout (offline).

    Example: niclip-ray atlas build-standin --dim 512 --out work/atlas, then
    niclip-ray embed images --atlas-dir work/atlas ...
    """
    maps = build_standin(out_dir, dim, seed)
    say(f"stand-in DiFuMo {dim} (seed {seed}, NOT the real atlas) -> {maps}", quiet=options(ctx).quiet)
