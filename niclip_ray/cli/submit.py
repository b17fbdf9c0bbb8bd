"""Turn a command into a Ray Job when ``--cluster`` or an ``http://`` address is given."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import GlobalOptions
from niclip_ray.errors import StageFailed
from niclip_ray.runtime import jobs
from niclip_ray.runtime.cluster import dashboard_tunnel

#: Commands that always run here: they describe or manage, they do not compute.
LOCAL_COMMANDS = {"info", "jobs", "cluster"}


def wants_submission(opts: GlobalOptions, command: str | None, argv: list[str]) -> bool:
    """True when this invocation should run on a cluster as a Ray Job."""
    if os.environ.get(jobs.IN_JOB_ENV) == "1" or command in LOCAL_COMMANDS or command is None:
        return False
    if "--help" in argv:
        return False
    return opts.cluster is not None or jobs.is_job_address(opts.address)


@contextmanager
def jobs_address(opts: GlobalOptions) -> Iterator[str]:
    """The Jobs API address: a port-forwarded dashboard for ``--cluster``, else ``--address``."""
    if opts.cluster is not None:
        with dashboard_tunnel(opts.cluster) as address:
            yield address
    else:
        with nullcontext(opts.address) as address:
            yield address


def run_as_job(opts: GlobalOptions, argv: list[str]) -> int:
    """Submit (or re-attach to) the job for ``argv``, stream its logs, return its exit code.

    Ctrl-C detaches: the job keeps running and can be followed with ``jobs logs``.
    """
    command = jobs.job_argv(argv)
    with jobs_address(opts) as address:
        sid, attached = jobs.submit(address, command, working_dir=opts.working_dir,
                                    on_wait=lambda line: err.print(line, markup=False))
        verb = "attached to the identical job" if attached else "submitted job"
        say(f"{verb} {sid} at {address}", quiet=opts.quiet)
        try:
            status = jobs.follow(address, sid, write=lambda text: out.print(text, end="", markup=False))
        except KeyboardInterrupt:
            err.print(f"detached; job {sid} keeps running (niclip-ray jobs logs {sid} --follow)")
            return 0
        if status == "SUCCEEDED":
            say(f"job {sid} succeeded", quiet=opts.quiet)
            return 0
        err.print(jobs.log_tail(address, sid), markup=False)
        raise StageFailed(f"job {sid} ended {status}")
