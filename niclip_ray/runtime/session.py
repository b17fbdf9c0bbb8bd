"""Start or join Ray for one command, configure Ray Data, and shut down cleanly.

Every command that needs Ray goes through :func:`ray_session`; pipelines never call
``ray.init`` themselves. Three modes:

* embedded (default): a private local Ray (``address="local"``), dashboard off, object
  store sized to the machine. ``address="local"`` ignores a stale
  ``/tmp/ray/ray_current_cluster``, which would otherwise make a bare ``ray.init`` try to
  join a dead cluster. Every process of it (gcs, raylet, workers, agents, metrics
  endpoints, Serve replicas) listens on 127.0.0.1 only; its files live in a temporary
  directory of its own (mode 0700; Ray's own is inside), removed when the command ends, and those of runs that
  were killed are removed by the next start (:mod:`niclip_ray.runtime.private`); its auth
  token file is readable by the owner only. A start that times out on a loaded machine is
  tried again (:func:`start_embedded`).
* connect: ``--address`` or ``RAY_ADDRESS`` (``auto``, ``HOST:PORT``, ``ray://...``). This is
  also how the command runs *inside* a submitted Ray Job, where Ray sets ``RAY_ADDRESS``.
* already running: a caller (a test fixture, a notebook) started Ray; it is used as is
  and left running.

A successful command prints no Ray noise: worker output is not forwarded to the driver
(``log_to_driver=False``), Ray's C++ log lines (``[... E ...] core_worker.cc: ...``) are
taken off the console, Ray Data logs only warnings there, and the embedded Ray asks for
token auth without Ray announcing it. With a ``log_dir`` all of it is kept
there (:func:`ray_session`); errors still raise on the driver and reach the console.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from niclip_ray.errors import ConfigError
from niclip_ray.runtime.auth import apply_client_auth, ensure_private_token
from niclip_ray.runtime.private import (
    LOOPBACK,
    RAY_SUBDIR,
    bind_grpc_to_loopback,
    embedded_temp_dir,
    loopback_node_ip,
    remove_stale_temp_dirs,
    remove_temp_dir,
)

log = logging.getLogger(__name__)

#: Seconds Ray Data waits for an actor pool to start before failing. A GPU request on a
#: cluster without GPUs otherwise hangs forever.
WAIT_FOR_ACTORS_S = float(os.environ.get("NICLIP_WAIT_FOR_ACTORS_S", 600))
#: Seconds without any progress after which a Ray Data job fails instead of hanging.
NO_PROGRESS_TIMEOUT_S = float(os.environ.get("NICLIP_NO_PROGRESS_TIMEOUT_S", 1800))
_MIB = 2**20
#: Attempts at starting the embedded Ray when a start times out (``NICLIP_RAY_START_ATTEMPTS``).
START_ATTEMPTS = max(1, int(os.environ.get("NICLIP_RAY_START_ATTEMPTS", 2)))
#: Seconds the embedded Ray's start waits for its GCS server (``NICLIP_RAY_START_TIMEOUT_S``;
#: Ray's own default is 30, short for a loaded 2-CPU machine).
START_TIMEOUT_S = float(os.environ.get("NICLIP_RAY_START_TIMEOUT_S", 120))
#: Environment of every Ray worker we start: workers have no terminal, so a tqdm bar in each
#: actor (transformers' GGUF loader, NiMARE) is only log noise on the driver.
WORKER_ENV = {"TQDM_DISABLE": "1"}
#: Level of Ray Train's console logs in its workers and helper actors
#: (``NICLIP_TRAIN_LOG_LEVEL``). At INFO they log a checkpoint and a report per epoch and
#: worker, and without a dashboard (the embedded Ray) its placement-group cleaner warns
#: every few seconds that the state API is unavailable; rank 0 prints our epoch lines and
#: failures still raise on the driver.
TRAIN_LOG_LEVEL = os.environ.get("NICLIP_TRAIN_LOG_LEVEL", "ERROR")
#: A line of Ray's C++ logging (``[2026-01-01 12:00:00,000 E 123 123] core_worker.cc:...``),
#: fatal lines excepted: these go to the log file, not the console.
RAY_CPP_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWE] \d+ \d+\] ")
#: File (under a session's ``log_dir``) receiving the console lines Ray's processes write.
CONSOLE_LOG = "ray-console.log"


def setup_worker() -> None:
    """Prepare a worker process of the embedded Ray (its ``worker_process_setup_hook``).

    Ray Train's console loggers (its helper actors, such as the placement-group cleaner,
    log under ``ray.train``) are set to ``TRAIN_LOG_LEVEL``, and gRPC servers the worker
    starts bind to 127.0.0.1 (:func:`~niclip_ray.runtime.private.bind_grpc_to_loopback`).
    """
    logging.getLogger("ray.train").setLevel(logging.getLevelName(TRAIN_LOG_LEVEL.upper()))
    bind_grpc_to_loopback()


@dataclass(frozen=True)
class RayOptions:
    """How a command reaches Ray.

    Parameters
    ----------
    address : str, optional
        Ray address to join. ``None`` falls back to ``RAY_ADDRESS``, then to an embedded
        local Ray.
    num_cpus : float, optional
        CPUs of the embedded Ray (default: all of this machine's).
    object_store_mb : int, optional
        Object store size of the embedded Ray (default: see :func:`object_store_bytes`).
    quiet : bool
        Hide Ray Data progress bars.
    """

    address: str | None = None
    num_cpus: float | None = None
    object_store_mb: int | None = None
    quiet: bool = False

    def resolved_address(self) -> str | None:
        """The address to join, or None for an embedded Ray."""
        return self.address or os.environ.get("RAY_ADDRESS") or None


def object_store_bytes() -> int:
    """Object store size for an embedded Ray: 20 % of RAM, at most 80 % of /dev/shm and 2 GiB.

    Our stages move small rows (projected vectors, pooled embeddings), so a small store is
    enough and leaves memory to the workers. Never below Ray's 75 MiB minimum.
    """
    import psutil

    size = int(0.2 * psutil.virtual_memory().total)
    if os.path.isdir("/dev/shm"):
        size = min(size, int(0.8 * shutil.disk_usage("/dev/shm").total))
    return max(min(size, 2048 * _MIB), 128 * _MIB)


def describe_mode(options: RayOptions) -> str:
    """One line saying which Ray this command would use, without starting anything."""
    import ray

    if ray.is_initialized():
        return "the Ray already running in this process"
    address = options.resolved_address()
    if address:
        return f"connect to the Ray cluster at {address}"
    cpus = options.num_cpus if options.num_cpus is not None else os.cpu_count()
    return f"embedded local Ray ({cpus:g} CPUs, dashboard off)"


def configure_data_context(quiet: bool = False) -> None:
    """Set the Ray Data options every niclip-ray stage relies on.

    Timeouts turn a misconfiguration (no GPU, no CPU left for reads) into an error;
    tensors are written as Arrow's canonical fixed-shape tensor type.
    """
    import ray.data
    from ray.data.extensions import FixedShapeTensorFormat

    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = WAIT_FOR_ACTORS_S
    ctx.execution_no_progress_timeout_s = NO_PROGRESS_TIMEOUT_S
    ctx.arrow_fixed_shape_tensor_format = FixedShapeTensorFormat.ARROW_NATIVE
    ctx.enable_progress_bars = False  # the CLI shows progress per item itself
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    quiet_data_console()


class _WarningsOnly(logging.Filter):
    """Drop records below WARNING and Ray Data's notice that its own progress bars are off."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not record.getMessage().startswith("Progress bars disabled")


def quiet_data_console() -> None:
    """Let Ray Data's console handler show warnings and errors only (its log file keeps the rest)."""
    for handler in logging.getLogger("ray.data").handlers:
        if not any(isinstance(f, _WarningsOnly) for f in handler.filters) and not isinstance(
            handler, logging.FileHandler
        ) and type(handler).__name__ != "SessionFileHandler":
            handler.addFilter(_WarningsOnly())


@contextmanager
def ray_console(log_file: Path | None) -> Iterator[None]:
    """Take Ray's C++ log lines off this process's stderr (file descriptor 2), into ``log_file``.

    Ray's driver and the processes it starts write them straight to the descriptor, so a
    thread reads it through a pipe: matching lines (:data:`RAY_CPP_LOG_LINE`) go to
    ``log_file`` (dropped when None), every other line to the original stderr.
    """
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sink = open(log_file, "ab") if log_file is not None else None  # noqa: SIM115 - closed below

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if RAY_CPP_LOG_LINE.match(line):
                    if sink is not None:
                        sink.write(line)
                        sink.flush()
                else:
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="ray-console", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes our copy of the pipe's write end
        thread.join(timeout=5)  # Ray's children hold the pipe until they exit
        os.close(original)
        if sink is not None and not thread.is_alive():
            sink.close()


def keep_logs(temp_dir: Path | None, log_dir: Path | None) -> None:
    """Copy an embedded Ray's session logs (workers, raylet, driver) into ``log_dir/ray/``."""
    if temp_dir is None or log_dir is None:
        return
    logs = temp_dir / RAY_SUBDIR / "session_latest" / "logs"
    if logs.is_dir():
        shutil.copytree(logs, log_dir / "ray", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock"))


CONNECT_TIMEOUT_S = float(os.environ.get("NICLIP_CONNECT_TIMEOUT_S", 10))


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when a ``HOST:PORT`` (or ``ray://``/``http://``) address does not answer.

    ``ray.init`` retries an unreachable GCS for minutes; a TCP probe with a timeout turns
    that into a clear error. ``auto`` is left to Ray, which fails at once without a cluster.

    Raises
    ------
    ConfigError
        When nothing accepts a connection at the address within ``timeout`` seconds.
    """
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"invalid Ray address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} (waited {timeout:g} s): {exc}") from exc


@contextmanager
def ray_session(options: RayOptions | None = None, log_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Run the body with Ray available, then shut down what this call started.

    Parameters
    ----------
    options : RayOptions, optional
    log_dir : path, optional
        Where Ray's logs are kept: ``ray-console.log`` (the lines Ray's processes wrote to
        this console) and, for an embedded Ray, ``ray/`` (its session logs: ``worker-*.out``
        and ``.err``, raylet, gcs, driver), copied when the session ends. Without it they are
        not kept.

    Raises
    ------
    ConfigError
        When the given address cannot be joined.
    """
    import ray

    options = options or RayOptions()
    if ray.is_initialized():
        configure_data_context(options.quiet)
        yield
        return
    address = options.resolved_address()
    temp_dir = None
    log_dir = Path(log_dir).resolve() if log_dir is not None else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    with ray_console(log_dir / CONSOLE_LOG if log_dir is not None else None):
        try:
            if address:
                check_reachable(address)
                apply_client_auth()
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                temp_dir = start_embedded(options)
        except (ConnectionError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"could not start or join {address or 'an embedded local Ray'}: {exc}") from exc
        try:
            configure_data_context(options.quiet)
            yield
        finally:
            ray.shutdown()
            keep_logs(temp_dir, log_dir)
            remove_temp_dir(temp_dir)


def start_embedded(options: RayOptions) -> Path:
    """Start a private local Ray bound to 127.0.0.1 in a new private directory, and return it.

    Directories of earlier embedded Rays whose owner is gone are removed first. A loaded
    machine can miss Ray's start-up deadlines (its raylet must register within 30 s, its
    GCS within :data:`START_TIMEOUT_S`), so a start that times out is tried again, up to
    :data:`START_ATTEMPTS` times, each in a fresh directory.

    Raises
    ------
    ConfigError
        When every attempt timed out: one line saying the machine looks overloaded and
        how to allow more.
    """
    import ray

    remove_stale_temp_dirs()
    ensure_private_token()
    for attempt in range(1, START_ATTEMPTS + 1):
        temp_dir = embedded_temp_dir()
        try:
            with loopback_node_ip(), _no_token_notice(), _gcs_port_wait():
                ray.init(
                    address="local",
                    log_to_driver=False,
                    num_cpus=options.num_cpus,
                    include_dashboard=False,
                    object_store_memory=(options.object_store_mb * _MIB if options.object_store_mb
                                         else object_store_bytes()),
                    logging_level=logging.WARNING,
                    configure_logging=True,
                    runtime_env={"env_vars": WORKER_ENV,
                                 "worker_process_setup_hook": "niclip_ray.runtime.session.setup_worker"},
                    _node_ip_address=LOOPBACK,
                    _temp_dir=str(temp_dir / RAY_SUBDIR),
                )
            return temp_dir
        except BaseException as exc:
            ray.shutdown()
            remove_temp_dir(temp_dir)
            if not _start_timed_out(exc):
                raise
            if attempt == START_ATTEMPTS:
                raise ConfigError(overloaded_message(exc)) from exc
            log.warning("the embedded Ray did not start in time (attempt %d of %d: %s); trying again",
                        attempt, START_ATTEMPTS, exc)


def _start_timed_out(exc: BaseException) -> bool:
    """Whether a failed ``ray.init`` ran out of time (a loaded machine) rather than failing outright."""
    return isinstance(exc, TimeoutError) or (isinstance(exc, Exception) and "timed out" in str(exc).lower())


def overloaded_message(exc: BaseException) -> str:
    """One line: the embedded Ray did not start, the machine's load, and how to allow more."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"the embedded Ray did not start in {START_ATTEMPTS} attempt(s) ({exc}); this machine looks overloaded "
            f"(load average {load:.1f} on {os.cpu_count()} CPUs): run again when it is quieter, or allow more "
            f"with NICLIP_RAY_START_ATTEMPTS (now {START_ATTEMPTS}) and NICLIP_RAY_START_TIMEOUT_S "
            f"(now {START_TIMEOUT_S:g})")


@contextmanager
def _gcs_port_wait() -> Iterator[None]:
    """Let Ray wait :data:`START_TIMEOUT_S` for its GCS (``RAY_gcs_server_port_wait_time_s``) unless set."""
    key = "RAY_gcs_server_port_wait_time_s"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(int(START_TIMEOUT_S))
    try:
        yield
    finally:
        os.environ.pop(key, None)


class _NoTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


@contextmanager
def _no_token_notice() -> Iterator[None]:
    """Hide Ray's notice that the new local cluster uses token auth (we made its token private)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _NoTokenNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def cluster_cpus() -> float:
    """CPUs the connected cluster has in total."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def cluster_gpus() -> float:
    """GPUs the connected cluster has in total."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def live_nodes() -> list[dict]:
    """The connected cluster's live nodes that offer CPUs (where actors and train workers can run)."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU", 0) > 0]


def largest_node_cpus() -> float:
    """CPUs of the connected cluster's largest live node: the most one actor or worker can get.

    Ray places an actor on one node, so a request sized from the cluster's sum (two 1-CPU
    nodes make 2 CPUs) can fit no node and waits forever.
    """
    return max((float(node["Resources"]["CPU"]) for node in live_nodes()), default=0.0)


def check_fits_a_node(what: str, cpus: float) -> None:
    """Raise at once when ``cpus`` for one ``what`` fit no live node (Ray would keep it pending forever).

    Raises
    ------
    ConfigError
        One line naming the request and the largest node.
    """
    largest = largest_node_cpus()
    if cpus > largest + 1e-9:
        raise ConfigError(f"{what} asks for {cpus:g} CPUs but the largest node of the cluster has {largest:g}: "
                          f"ask for at most {largest:g}")


def worker_cpu_share(num_workers: int, max_concurrent_folds: int, total_cpus: float,
                     node_cpus: float | None = None, wanted: float = 1.0) -> float:
    """CPUs per Ray Train worker: concurrent folds fit, half a CPU stays free, one worker fits a node.

    See ``docs/runtime.md``, "Small machines". ``node_cpus`` is the largest node's CPUs
    (default: ``total_cpus``, one node).
    """
    budget = max(total_cpus - 0.5, 0.25)
    share = min(wanted, budget / max(1, num_workers * max_concurrent_folds))
    return round(min(share, node_cpus if node_cpus is not None else total_cpus), 3)


def train_worker_share(num_workers: int, max_concurrent_folds: int) -> float:
    """:func:`worker_cpu_share` on the connected cluster."""
    return worker_cpu_share(num_workers, max_concurrent_folds, cluster_cpus(), largest_node_cpus())


def actor_pool_shape(
    n_actors: int | None, cpus_per_actor: float = 1.0, limit: int | None = None
) -> tuple[int, float]:
    """Size a CPU actor pool so it never holds every CPU of the cluster and each actor fits a node.

    Ray Data starves (hangs) when an actor pool takes all CPUs: nothing is left to feed it.
    We keep half a CPU free and shrink each actor's share (fractional CPUs) when the
    machine is small. An actor runs on one node, so its share is at most the largest
    node's CPUs, never a share of the cluster's sum.

    Parameters
    ----------
    n_actors : int, optional
        Wanted number of actors (default: one per CPU).
    cpus_per_actor : float
        Wanted CPUs per actor.
    limit : int, optional
        At most this many actors (a stage never starts more actors than it has shards).

    Returns
    -------
    (n_actors, cpus_per_actor)
    """
    total = cluster_cpus()
    if total <= 0:
        raise ConfigError("the Ray cluster reports no CPUs")
    n = max(1, int(n_actors) if n_actors else max(1, int(total // max(cpus_per_actor, 1e-3))))
    if limit is not None:
        n = max(1, min(n, int(limit)))
    budget = max(total - 0.5, 0.25)
    share = min(cpus_per_actor, budget / n, largest_node_cpus())
    return n, round(share, 3)
