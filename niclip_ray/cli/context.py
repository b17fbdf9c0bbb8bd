"""Global options shared by every command, and the Ray session they imply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from niclip_ray.runtime import RayOptions


@dataclass
class GlobalOptions:
    """Options given before the command name (``niclip-ray --num-cpus 2 corpus ...``)."""

    address: str | None = None
    cluster: Path | None = None
    num_cpus: float | None = None
    quiet: bool = False
    verbose: bool = False
    working_dir: Path | None = Path(".")
    #: The raw command line (without the program name); job submission turns it into the
    #: job's entrypoint.
    argv: list[str] = field(default_factory=list)

    def ray_options(self) -> RayOptions:
        """The Ray connection these options ask for."""
        return RayOptions(address=self.address, num_cpus=self.num_cpus, quiet=self.quiet)


def options(ctx: typer.Context) -> GlobalOptions:
    """The global options of the running command (defaults when run without :func:`run`)."""
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions()
    return root.obj
