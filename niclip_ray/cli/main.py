"""Root of the ``niclip-ray`` CLI: global options, command groups, and error handling."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray import __version__
from niclip_ray.atomic import STORAGE_ERRNOS, storage_message
from niclip_ray.cli.atlas import app as atlas_app
from niclip_ray.cli.baselines import app as baselines_app
from niclip_ray.cli.cluster import app as cluster_app
from niclip_ray.cli.console import err
from niclip_ray.cli.context import GlobalOptions, options
from niclip_ray.cli.corpus import app as corpus_app
from niclip_ray.cli.decode import decode
from niclip_ray.cli.demo import demo
from niclip_ray.cli.embed import app as embed_app
from niclip_ray.cli.evaluate import evaluate
from niclip_ray.cli.index import app as index_app
from niclip_ray.cli.info import info
from niclip_ray.cli.jobs import app as jobs_app
from niclip_ray.cli.model import app as model_app
from niclip_ray.cli.options import user_message
from niclip_ray.cli.pipeline import pipeline
from niclip_ray.cli.predict import predict
from niclip_ray.cli.runconfig import default_map, load_run_config
from niclip_ray.cli.search import app as search_app
from niclip_ray.cli.serve import app as serve_app
from niclip_ray.cli.submit import run_as_job, wants_submission
from niclip_ray.cli.train import train
from niclip_ray.cli.vocab import app as vocab_app
from niclip_ray.controls import escape_controls
from niclip_ray.errors import NiclipError, OutputError

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
app.add_typer(vocab_app, name="vocab")
app.add_typer(jobs_app, name="jobs")
app.add_typer(cluster_app, name="cluster")
app.command()(demo)
app.command()(info)
app.command()(pipeline)
app.command()(evaluate)
app.add_typer(baselines_app, name="baselines")
app.command()(train)
app.add_typer(model_app, name="model")
app.command()(decode)
app.command()(predict)
app.add_typer(index_app, name="index")
app.add_typer(search_app, name="search")
app.add_typer(serve_app, name="serve")


#: Options of the root command, accepted after the command name too: those that take a value, and flags.
GLOBAL_VALUED = ("--address", "--cluster", "--num-cpus", "--config", "--working-dir")
GLOBAL_FLAGS = ("--quiet", "-q", "--verbose", "-v")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options given after the command name to before it.

    ``niclip-ray decode map.nii.gz --model B --out O -q`` then means
    ``niclip-ray -q decode ...``. Nothing after ``--`` is moved, and no command defines an
    option of the same name.
    """
    head, rest = [], list(argv)
    while rest and rest[0].startswith("-"):  # options before the command, with their values
        token = rest.pop(0)
        head.append(token)
        if token in GLOBAL_VALUED and rest:
            head.append(rest.pop(0))
    if not rest:
        return head
    command, hoisted, tail = [rest.pop(0)], [], []
    while rest:
        token = rest.pop(0)
        if token == "--":
            tail += [token, *rest]
            break
        name = token.split("=", 1)[0]
        if token in GLOBAL_FLAGS:
            hoisted.append(token)
        elif name in GLOBAL_VALUED:
            hoisted.append(token)
            if "=" not in token and rest:
                hoisted.append(rest.pop(0))
        else:
            command.append(token)
    return head + hoisted + command + tail


def _flags_without_type() -> None:
    """Show a flag in ``--help`` as ``--strict``, not ``--strict <bool>`` (Typer 0.29 prints every option's type)."""
    from typer.core import TyperOption

    display = TyperOption.display_type_rich
    if getattr(display, "flags_without_type", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else display(self, ctx)

    display_type_rich.flags_without_type = True
    TyperOption.display_type_rich = display_type_rich


_flags_without_type()


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
    config: Annotated[
        Path | None, typer.Option(help="Run config (YAML) giving option defaults per command; see jobs/.")
    ] = None,
    working_dir: Annotated[
        Path, typer.Option(help="Directory uploaded with a submitted job (its working directory).")
    ] = Path("."),
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Global options go before the command name, or after it."""
    opts = options(ctx)
    opts.address, opts.cluster, opts.num_cpus = address, cluster, num_cpus
    opts.quiet, opts.verbose, opts.working_dir = quiet, verbose, working_dir
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if config is not None:
        ctx.default_map = default_map(load_run_config(config))
    if wants_submission(opts, ctx.invoked_subcommand, opts.argv):
        raise typer.Exit(run_as_job(opts, opts.argv))


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; our errors become one line on stderr."""
    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    opts = GlobalOptions(argv=argv)
    try:
        result = app(args=argv, prog_name="niclip-ray", standalone_mode=False, obj=opts)
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
        _report(exc, opts.verbose)
        return exc.exit_code
    except Exception as exc:  # anything unexpected: still one line, traceback on --verbose
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:  # a full or read-only disk, outside the writers
            _report(OutputError(storage_message(exc, None)), opts.verbose)
        else:
            _report(exc, opts.verbose, prefix=f"unexpected {type(exc).__name__}: ")
        return 1


def _report(exc: BaseException, verbose: bool, prefix: str = "") -> None:
    if verbose:
        err.print(traceback.format_exc(), markup=False)
    err.print(f"error: {prefix}{escape_controls(user_message(exc))}", markup=False)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
