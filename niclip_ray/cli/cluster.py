"""``niclip-ray cluster``: check a cluster launcher YAML before ``ray up``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import out
from niclip_ray.runtime.cluster import load_cluster_config

app = typer.Typer(help="Cluster launcher configs.", no_args_is_help=True)


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="Cluster launcher YAML.")]) -> None:
    """Validate CONFIG offline against Ray's cluster schema."""
    cfg = load_cluster_config(config)
    types = ", ".join(sorted(cfg.get("available_node_types", {}))) or "default"
    out.print(f"{config}: valid ({cfg['provider']['type']} provider; node types: {types})")
