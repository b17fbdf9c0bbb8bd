"""Cluster launcher configs: offline validation and a port-forwarded dashboard address.

The dashboard (and so the Jobs API) of our clusters listens on the head's loopback only.
A client reaches it through ``ray dashboard cluster.yaml``, which opens an SSH tunnel to
``127.0.0.1:<port>``; :func:`dashboard_tunnel` runs that for the duration of a command.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from niclip_ray.errors import ConfigError

TUNNEL_TIMEOUT_S = 120.0


def load_cluster_config(path: str | Path) -> dict:
    """Read and validate a cluster launcher YAML offline against Ray's schema.

    Uses Ray's own validator (defaults filled in first, as ``ray up`` does) and falls back to
    the JSON schema shipped with Ray if the private validator moves.

    Raises
    ------
    ConfigError
        Naming the file and the first problem found.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"cluster config not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a cluster config (expected a mapping at the top level)")
    try:
        from ray.autoscaler._private.util import fillout_defaults, validate_config
    except ImportError:  # private API moved: schema-only validation
        _validate_schema(config, path)
        return config
    try:
        validate_config(fillout_defaults(copy.deepcopy(config)))
    except Exception as exc:  # jsonschema.ValidationError, ValueError, KeyError from Ray's checks
        message = getattr(exc, "message", None) or str(exc)
        raise ConfigError(f"invalid cluster config {path}: {message.splitlines()[0]}") from exc
    return config


def _validate_schema(config: dict, path: Path) -> None:
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    try:
        jsonschema.validate(config, json.loads(schema_path.read_text()))
    except jsonschema.ValidationError as exc:
        raise ConfigError(f"invalid cluster config {path}: {exc.message}") from exc


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A free local TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dashboard_tunnel(cluster_yaml: str | Path, timeout: float = TUNNEL_TIMEOUT_S) -> Iterator[str]:
    """Forward the cluster's dashboard to a local port and yield its ``http://`` address.

    Raises
    ------
    ConfigError
        When the config is invalid, ``ray`` is not installed as a command, or the tunnel
        does not come up within ``timeout`` seconds (cluster down, SSH refused).
    """
    load_cluster_config(cluster_yaml)
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(ray_bin).exists():
        raise ConfigError("the 'ray' command is not installed; cannot reach the cluster dashboard")
    port = free_port()
    proc = subprocess.Popen(
        [ray_bin, "dashboard", "--port", str(port), str(cluster_yaml)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if proc.poll() is not None:
                detail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(f"cannot reach the head of {cluster_yaml}: 'ray dashboard' exited ({detail[0]})")
            if time.monotonic() > deadline:
                raise ConfigError(f"the dashboard of {cluster_yaml} did not answer within {timeout:g} s (is it up?)")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
