"""``niclip-ray pipeline RUN.yaml``: run the ``steps`` of a run config in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import say
from niclip_ray.cli.context import options
from niclip_ray.cli.runconfig import load_run_config
from niclip_ray.errors import ConfigError, StageFailed


def pipeline(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Run config with a 'steps' list (see jobs/).")],
    start: Annotated[int, typer.Option(min=1, help="First step to run (1-based), to skip finished ones.")] = 1,
    dry_run: Annotated[bool, typer.Option(help="Print the commands without running them.")] = False,
) -> None:
    """Run every step of CONFIG, each as `niclip-ray --config CONFIG STEP...`.

    Each step runs in its own process with its own Ray session; stages resume, so rerunning
    a pipeline skips work already done. With --cluster the whole pipeline is one Ray Job.
    """
    steps = load_run_config(config).get("steps")
    if not steps:
        raise ConfigError(f"{config} has no 'steps' to run")
    opts = options(ctx)
    passthrough = (["--num-cpus", f"{opts.num_cpus:g}"] if opts.num_cpus else []) + (["-q"] if opts.quiet else [])
    passthrough += ["-v"] if opts.verbose else []
    for number, step in enumerate(steps, start=1):
        if number < start:
            continue
        argv = [*passthrough, "--config", str(config), *map(str, step)]
        say(f"[{number}/{len(steps)}] niclip-ray {' '.join(argv)}", quiet=opts.quiet)
        if dry_run:
            continue
        code = subprocess.call([sys.executable, "-m", "niclip_ray", *argv])
        if code != 0:
            raise StageFailed(f"step {number} ({' '.join(map(str, step))}) exited {code}; rerun with --start {number}")
