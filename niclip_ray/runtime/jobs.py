"""Run a niclip-ray command on a cluster as a Ray Job, and manage such jobs.

The job's entrypoint is the very same ``niclip-ray`` command line, minus the options that
asked for submission; inside the job Ray sets ``RAY_ADDRESS`` and the command joins the
cluster like any driver. The submission id is derived from the command, so submitting the
same command twice attaches to the first job instead of starting a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from niclip_ray import __version__
from niclip_ray.errors import ConfigError
from niclip_ray.runtime.auth import auth_env
from niclip_ray.runtime.session import WORKER_ENV

#: Global options that only say *where* to run; they are not part of the job's command.
SUBMISSION_OPTIONS = {"--address": 1, "--cluster": 1, "--working-dir": 1}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
IN_JOB_ENV = "NICLIP_IN_JOB"
#: A head whose job agent is still starting answers "No available agent", and a head under
#: load can reset a connection; such refusals are retried with backoff for this long.
AGENT_WAIT_S = float(os.environ.get("NICLIP_JOB_AGENT_WAIT_S", 60))
#: Longest pause between two tries.
MAX_BACKOFF_S = 8.0


def is_job_address(address: str | None) -> bool:
    """True for a Jobs API (dashboard) address such as ``http://head:8265``."""
    return bool(address) and address.startswith(("http://", "https://"))


def job_argv(argv: list[str]) -> list[str]:
    """The command line to run inside the job: ``argv`` without the submission options."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in SUBMISSION_OPTIONS:
            skip = 0 if "=" in arg else SUBMISSION_OPTIONS[name]
            continue
        out.append(arg)
    return out


def submission_id(argv: list[str]) -> str:
    """Stable id for a command: same command and inputs -> same id.

    ``niclip-<first words of the command>-<12 hex digits of sha256(version, argv)>``.
    """
    words = [a for a in argv if not a.startswith("-")][:2]
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(words).lower()).strip("-")[:40] or "command"
    digest = hashlib.sha256("\x00".join([__version__, *argv]).encode()).hexdigest()[:12]
    return f"niclip-{slug}-{digest}"


def client(address: str):
    """A Jobs API client with our auth headers; errors become :class:`ConfigError`."""
    from ray.job_submission import JobSubmissionClient

    from niclip_ray.runtime.session import check_reachable

    check_reachable(address)
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging",
                 "ray.dashboard.modules.job.sdk", "ray._private.runtime_env.working_dir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for key, value in auth_env().items():
        os.environ.setdefault(key, value)
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, auth errors, version mismatch
        raise ConfigError(f"cannot use the Jobs API at {address}: {exc}") from exc


def runtime_env(working_dir: str | Path | None) -> dict:
    """runtime_env of a submitted command: working dir and auth/offline environment."""
    env = {IN_JOB_ENV: "1", **WORKER_ENV, **auth_env()}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NILEARN_DATA", "HF_HOME"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    runtime = {"env_vars": env}
    if working_dir is not None:
        runtime["working_dir"] = str(working_dir)
    return runtime


def submit(address: str, argv: list[str], working_dir: str | Path | None = ".",
           on_wait: Callable[[str], None] | None = None) -> tuple[str, bool]:
    """Submit ``niclip-ray ARGV`` as a job, or find the identical job submitted earlier.

    A refusal that only says "not yet" (the head's job agent still starting, a connection
    reset) is tried again with backoff for :data:`AGENT_WAIT_S` seconds; ``on_wait`` gets
    one line saying so when the first try is refused.

    Returns
    -------
    (submission_id, attached)
        ``attached`` is True when an identical job already existed (running or succeeded)
        and was reused rather than submitted again. A failed or stopped earlier job is
        retried under ``<id>-rN``.

    Raises
    ------
    ConfigError
        When the cluster refuses the job, or still refuses it after :data:`AGENT_WAIT_S`.
    """
    jobs = client(address)
    base = submission_id(argv)
    sid, attempt = base, 1
    while True:
        status = with_retries(functools.partial(_status_or_none, jobs, sid), address, on_wait)
        if status is None:
            break
        if status not in ("FAILED", "STOPPED"):
            return sid, True
        attempt += 1
        sid = f"{base}-r{attempt}"
    entrypoint = shlex.join(["niclip-ray", *argv])
    with_retries(lambda: jobs.submit_job(
        entrypoint=entrypoint,
        submission_id=sid,
        runtime_env=runtime_env(working_dir),
        metadata={"tool": "niclip-ray", "version": __version__, "command": " ".join(argv[:3])[:200]},
        entrypoint_num_cpus=0,
    ), address, on_wait, sid)
    return sid, False


def is_transient(exc: BaseException) -> bool:
    """Whether the Jobs API refused only for now: its agent is starting, or the connection dropped."""
    import requests

    text = str(exc)
    return (isinstance(exc, (ConnectionError, requests.exceptions.ConnectionError))
            or "No available agent" in text or "Connection reset" in text or "Connection aborted" in text)


def with_retries(call: Callable, address: str, on_wait: Callable[[str], None] | None = None, sid: str | None = None):
    """``call()``, tried again with backoff (1, 2, 4, then 8 s) while it fails transiently, for :data:`AGENT_WAIT_S`.

    Raises
    ------
    ConfigError
        When it fails otherwise, or still fails after the wait.
    """
    what = f"job {sid}" if sid else "the job query"
    deadline, pause, waited = time.monotonic() + AGENT_WAIT_S, 1.0, False
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise ConfigError(f"the cluster at {address} refused {what}: {exc}") from exc
            if time.monotonic() + pause > deadline:
                raise ConfigError(f"the cluster at {address} still refused {what} after {AGENT_WAIT_S:g} s ({exc}); "
                                  f"its head may still be starting: try again, or wait longer with "
                                  f"NICLIP_JOB_AGENT_WAIT_S") from exc
            if not waited and on_wait is not None:
                on_wait(f"waiting for the cluster at {address} to accept jobs (up to {AGENT_WAIT_S:g} s): {exc}")
            waited = True
            time.sleep(pause)
            pause = min(2 * pause, MAX_BACKOFF_S)


def _status_or_none(jobs, sid: str) -> str | None:
    try:
        return str(jobs.get_job_status(sid).value)
    except RuntimeError:  # "Job ... does not exist"
        return None


def follow(address: str, sid: str, write: Callable[[str], None], poll_s: float = 1.0) -> str:
    """Stream a job's logs until it ends; return its final status.

    Ctrl-C (KeyboardInterrupt) propagates to the caller, which detaches: the job goes on.
    """
    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(sid):
            write(lines)

    with contextlib.suppress(Exception):  # the log stream can drop (head restart); fall back to polling
        asyncio.run(tail())
    status = _status_or_none(jobs, sid)
    while status not in TERMINAL:
        time.sleep(poll_s)
        status = _status_or_none(jobs, sid)
    return str(status)


def log_tail(address: str, sid: str, n_lines: int = 30) -> str:
    """The last ``n_lines`` of a job's log."""
    return "\n".join(client(address).get_job_logs(sid).rstrip().splitlines()[-n_lines:])
