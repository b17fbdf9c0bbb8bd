"""``niclip-ray jobs``: list, inspect, follow and stop the jobs niclip-ray submitted."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.submit import jobs_address
from niclip_ray.errors import ConfigError
from niclip_ray.runtime import jobs

app = typer.Typer(help="Manage Ray Jobs on a cluster (needs --cluster or --address http://HEAD:8265).",
                  no_args_is_help=True)
JobId = Annotated[str, typer.Argument(help="Submission id (niclip-...).")]


def _address_options(ctx: typer.Context):
    opts = options(ctx)
    if opts.cluster is None and not jobs.is_job_address(opts.address):
        raise ConfigError("jobs commands need --cluster cluster.yaml or --address http://HEAD:8265")
    return jobs_address(opts)


@app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """List jobs, newest first."""
    with _address_options(ctx) as address:
        table = Table()
        table.add_column("submission id", no_wrap=True)
        for column in ("status", "started", "entrypoint"):
            table.add_column(column)
        for job in sorted(jobs.client(address).list_jobs(), key=lambda j: j.start_time or 0, reverse=True):
            started = datetime.fromtimestamp(job.start_time / 1000).isoformat(" ", "seconds") if job.start_time else ""
            table.add_row(job.submission_id or job.job_id or "?", str(job.status.value), started, job.entrypoint)
        out.print(table)


@app.command()
def status(ctx: typer.Context, job_id: JobId) -> None:
    """Print a job's status and message."""
    with _address_options(ctx) as address:
        info = jobs.client(address).get_job_info(job_id)
        out.print(f"{job_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))


@app.command()
def logs(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the job ends.")] = False,
) -> None:
    """Print a job's logs."""
    with _address_options(ctx) as address:
        if not follow:
            out.print(jobs.client(address).get_job_logs(job_id), end="", markup=False)
            return
        final = jobs.follow(address, job_id, write=lambda text: out.print(text, end="", markup=False))
        say(f"job {job_id} ended {final}", quiet=options(ctx).quiet)
        if final != "SUCCEEDED":
            raise typer.Exit(1)


@app.command()
def stop(ctx: typer.Context, job_id: JobId) -> None:
    """Ask a running job to stop."""
    with _address_options(ctx) as address:
        stopped = jobs.client(address).stop_job(job_id)
        say(f"{job_id}: {'stop requested' if stopped else 'was not running'}", quiet=options(ctx).quiet)
