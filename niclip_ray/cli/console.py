"""Console output: rich on a terminal, plain lines otherwise; errors go to stderr."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str, *, quiet: bool = False) -> None:
    """Print an informational line unless ``--quiet``."""
    if not quiet:
        out.print(message)
