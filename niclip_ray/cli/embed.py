"""``niclip-ray embed``: per-study features (images on CPU workers, text on GPU actors)."""

from __future__ import annotations

import typer

from niclip_ray.cli.embed_images import images
from niclip_ray.cli.embed_text import text

app = typer.Typer(help="Compute image and text features of a corpus into Parquet.", no_args_is_help=True)
app.command("images")(images)
app.command("text")(text)
