"""``niclip-ray info``: versions, the Ray mode a command would use, local atlases and models."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.atlas.cache import default_data_dirs, default_standin_dir, find_difumo
from niclip_ray.cli.atlas import fetch_hint
from niclip_ray.cli.console import out
from niclip_ray.cli.context import options
from niclip_ray.features.local_models import find_local_models
from niclip_ray.runtime import describe_mode

PACKAGES = ("niclip-ray", "ray", "torch", "nimare", "nilearn", "nibabel", "transformers", "peft", "pyarrow", "numpy")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def info(
    ctx: typer.Context,
    atlas_dir: Annotated[
        list[Path] | None, typer.Option(help="Extra nilearn data directory to search for DiFuMo.")
    ] = None,
) -> None:
    """Print versions, the Ray mode that would be used, and local atlases and models."""
    opts = options(ctx)
    versions = Table(title="Versions", show_header=False)
    versions.add_row("python", platform.python_version())
    for package in PACKAGES:
        versions.add_row(package, _version(package))
    out.print(versions)

    if opts.cluster is not None:
        mode = f"submit as a Ray Job to the cluster of {opts.cluster}"
    else:
        mode = describe_mode(opts.ray_options())
    out.print(f"Ray mode: {mode}")

    dirs = list(atlas_dir or []) + default_data_dirs() + [default_standin_dir(0)]
    atlases = find_difumo(dirs)
    table = Table(title="DiFuMo atlases on disk")
    table.add_column("atlas_id", no_wrap=True)
    table.add_column("dimension")
    table.add_column("stand-in")
    table.add_column("data_dir", overflow="fold")
    for atlas in atlases:
        table.add_row(atlas.atlas_id, str(atlas.dim), "yes" if atlas.standin else "no", str(atlas.data_dir))
    out.print(table if atlases else f"DiFuMo atlases on disk: none in {', '.join(map(str, dirs))}")
    hint = fetch_hint(atlases)
    if hint:
        out.print(f"note: {hint}", markup=False)

    models = find_local_models()
    table = Table(title="Language models available offline")
    for column in ("model", "kind", "path"):
        table.add_column(column)
    for model in models:
        table.add_row(model.model_id, model.kind, str(model.path))
    out.print(table if models else "Language models available offline: none")
