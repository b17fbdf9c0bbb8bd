"""Keep an embedded Ray private to this user and machine: its directory, its sockets, its leftovers.

Ray makes every directory it creates world-writable (mode 0777, no sticky bit, set again
by each worker it starts) and binds a Serve replica's inter-deployment gRPC server to
every interface. For the embedded Ray (never for a cluster we join) this module:

* creates a private directory (mode 0700, which Ray never changes) holding an owner file
  naming this process and Ray's own temporary directory, ``ray/``: whatever modes Ray
  gives the directories inside, no other user can reach them;
* binds the gRPC servers of Ray's workers to 127.0.0.1 (:func:`bind_grpc_to_loopback`,
  run in every worker by the embedded Ray's setup hook) and the node itself to loopback
  (:func:`loopback_node_ip`);
* removes the directories of earlier runs whose owner is gone, e.g. killed with
  ``kill -9`` (:func:`remove_stale_temp_dirs`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The only address the embedded Ray listens on.
LOOPBACK = "127.0.0.1"
#: Prefix of the temporary directory (Ray's ``_temp_dir``) of one embedded Ray.
TEMP_PREFIX = "niclip-ray-"
#: File in that directory naming the process that owns it (pid and start time).
OWNER_FILE = "niclip-owner.json"
#: Ray's temporary directory (``_temp_dir``) inside it.
RAY_SUBDIR = "ray"
#: A directory without an owner file (written before the owner file existed) counts as
#: stale only once this old and when no running process names it.
UNOWNED_GRACE_S = 3600.0


def temp_parent() -> str | None:
    """Where Ray would put its temporary directory: ``RAY_TMPDIR``, else the system's.

    ``/tmp`` on macOS, whose ``$TMPDIR`` is too long for the Unix socket paths Ray creates.
    """
    return os.environ.get("RAY_TMPDIR") or ("/tmp" if sys.platform == "darwin" else None)


def embedded_temp_dir() -> Path:
    """A new private (0700) directory for one embedded Ray, owned by this process.

    Ray's own temporary directory is its :data:`RAY_SUBDIR`.
    """
    import psutil

    path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_parent()))
    owner = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def owner_alive(path: Path) -> bool:
    """Whether the process that owns an embedded Ray's directory still runs.

    Judged by the owner file (the pid, and its start time against pid reuse); a directory
    without one is alive while young or while a running process names it in its command
    line (Ray's own processes do).
    """
    import psutil

    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if time.time() - path.stat().st_mtime < UNOWNED_GRACE_S:
        return True
    for process in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or ()):
            return True
    return False


def remove_stale_temp_dirs(parent: str | os.PathLike | None = None) -> list[Path]:
    """Remove this user's embedded Ray directories whose owner process is gone.

    Returns
    -------
    list of Path
        The directories removed.
    """
    parent = Path(parent or temp_parent() or tempfile.gettempdir())
    removed = []
    for path in sorted(parent.glob(f"{TEMP_PREFIX}*")):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid() or owner_alive(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_temp_dir(temp_dir: Path | None, wait_s: float = 10.0) -> None:
    """Remove an embedded Ray's temporary directory (sessions, logs, sockets, spilled objects).

    Ray's processes may still write their last log lines just after shutdown, so removal is
    retried for up to ``wait_s`` seconds.
    """
    if temp_dir is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        shutil.rmtree(temp_dir, ignore_errors=True)
        if not temp_dir.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def bind_grpc_to_loopback() -> None:
    """In a worker of the embedded Ray: bind gRPC servers that ask for every interface to 127.0.0.1.

    A Serve replica starts its inter-deployment gRPC server on ``[::]:0`` through
    ``ray._common.tls_utils.add_port_to_grpc_server`` (imported by name when the replica's
    module loads, after this runs). Ray's callers reach it at the node's IP, which for the
    embedded Ray is 127.0.0.1.
    """
    from ray._common import tls_utils

    add_port = tls_utils.add_port_to_grpc_server
    if getattr(add_port, "loopback_only", False):
        return

    def add_loopback_port(server, address: str):
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", ""):
            address = f"{LOOPBACK}:{port}"
        return add_port(server, address)

    add_loopback_port.loopback_only = True
    tls_utils.add_port_to_grpc_server = add_loopback_port


@contextmanager
def loopback_node_ip() -> Iterator[None]:
    """Let ``ray.init(_node_ip_address="127.0.0.1")`` keep the loopback address.

    Ray swaps a loopback node IP for the machine's routable one unless multi-node clusters
    are off (its default on macOS and Windows, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read
    once at import). With that switch off while Ray starts, gcs, raylet, workers, agents
    and metrics endpoints all bind to 127.0.0.1 instead of every interface.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
