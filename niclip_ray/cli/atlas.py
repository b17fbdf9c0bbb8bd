"""``niclip-ray atlas``: which DiFuMo atlases are on disk, and the offline stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.atlas.cache import default_data_dirs, default_standin_dir, find_difumo
from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.errors import InputError

app = typer.Typer(help="DiFuMo atlases: list what is on disk, fetch the real one, build the offline stand-in.",
                  no_args_is_help=True)
#: What to run for the real atlas, printed when only a stand-in is on disk.
FETCH_HINT = (
    "only the offline stand-in is on disk; for the real DiFuMo run (online, once) "
    "`niclip-ray atlas fetch --dim 512 --out ~/nilearn_data`, or in Python "
    "`nilearn.datasets.fetch_atlas_difumo(dimension=512, resolution_mm=2)`"
)


def fetch_hint(caches) -> str | None:
    """:data:`FETCH_HINT` when atlases were found and none of them is the real DiFuMo."""
    return FETCH_HINT if caches and all(cache.standin for cache in caches) else None


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
    hint = fetch_hint(found)
    if hint:
        err.print(f"note: {hint}", markup=False)


@app.command()
def fetch(
    ctx: typer.Context,
    dim: Annotated[int, typer.Option("--dim", help="Components: 64, 128, 256, 512 or 1024.")] = 512,
    out_dir: Annotated[
        Path, typer.Option("--out", help="nilearn data directory to download difumo_atlases/ into.")
    ] = Path("~/nilearn_data"),
) -> None:
    """Download the real DiFuMo atlas (2 mm) with nilearn's fetch_atlas_difumo (needs the network once).

    Example: niclip-ray atlas fetch --dim 512 --out ~/nilearn_data, then
    niclip-ray decode map.nii.gz --atlas-dir ~/nilearn_data ...
    """
    from niclip_ray.atlas.difumo import load_atlas

    target = out_dir.expanduser()
    target.mkdir(parents=True, exist_ok=True)
    atlas = load_atlas(dim, data_dir=target, allow_standin=False, download=True)
    say(f"{atlas.atlas_id} (real DiFuMo, {atlas.dim} components) in {atlas.data_dir}", quiet=options(ctx).quiet)


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
    from niclip_ray.atlas.difumo import build_standin

    maps = build_standin(out_dir, dim, seed)
    say(f"stand-in DiFuMo {dim} (seed {seed}, NOT the real atlas) -> {maps}", quiet=options(ctx).quiet)
