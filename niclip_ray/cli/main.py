"""Root of the ``niclip-ray`` CLI: global options, command groups, and error handling."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray import __version__
from niclip_ray.cli import context
from niclip_ray.cli.console import err
from niclip_ray.cli.atlas import app as atlas_app
from niclip_ray.cli.baselines import app as baselines_app
from niclip_ray.cli.corpus import app as corpus_app
from niclip_ray.cli.embed import app as embed_app
from niclip_ray.cli.evaluate import evaluate
from niclip_ray.cli.info import info
from niclip_ray.errors import NiclipError

app = typer.Typer(
    name="niclip-ray",
    help="NiCLIP brain decoding on Ray: brain maps -> Cognitive Atlas tasks, concepts, domains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(corpus_app, name="corpus")
app.add_typer(atlas_app, name="atlas")
app.add_typer(embed_app, name="embed")
app.command()(info)
app.command()(evaluate)
app.add_typer(baselines_app, name="baselines")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"niclip-ray {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Option(envvar="RAY_ADDRESS", help="Ray cluster to use (auto, HOST:PORT, http://HEAD:8265)."),
    ] = None,
    cluster: Annotated[
        Path | None, typer.Option(help="Cluster launcher YAML; the command runs there as a Ray Job.")
    ] = None,
    num_cpus: Annotated[
        float | None, typer.Option(min=0.5, help="CPUs of the embedded local Ray (default: all).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and results.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs, and tracebacks on error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Global options go before the command name."""
    ctx.obj = context.GlobalOptions(address=address, cluster=cluster, num_cpus=num_cpus, quiet=quiet, verbose=verbose)
    context.CURRENT = ctx.obj
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; our errors become one line on stderr."""
    context.CURRENT = context.GlobalOptions()
    try:
        result = app(args=argv, prog_name="niclip-ray", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: Typer prints them with the usage line
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        return 130
    except NiclipError as exc:
        _report(exc)
        return exc.exit_code
    except Exception as exc:  # anything unexpected: still one line, traceback on --verbose
        _report(exc, prefix=f"unexpected {type(exc).__name__}: ")
        return 1


def _report(exc: BaseException, prefix: str = "") -> None:
    if context.CURRENT.verbose:
        err.print(traceback.format_exc(), markup=False)
    err.print(f"error: {prefix}{exc}", markup=False)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
