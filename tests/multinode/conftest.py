"""A real three-node Ray cluster on this machine, as Ray's own multi-node tests run one.

A head that offers no CPUs for work and two worker nodes of 1 CPU each (custom resources
``node_a`` and ``node_b`` tell them apart), every process on 127.0.0.1 and in its own
temporary directory. Each node is a ``ray start --block`` in its own process group, so a
test can kill one node whole (its raylet, object store and workers) and the teardown ends
exactly what was started, never another Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from niclip_ray.runtime.cluster import free_port
from tests.conftest import machine_load

BIN = Path(sys.executable).parent
#: ``ray start`` that keeps ``--node-ip-address=127.0.0.1``. Ray swaps a loopback node IP for
#: the machine's routable one unless multi-node clusters are off
#: (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which in turn refuses to start a worker node.
#: The node processes get the switch off (so that every agent binds loopback); the launcher
#: itself keeps it on and takes the address as given.
RAY_START = """
import sys
from ray._private import ray_constants, services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv[0] = "ray"
main()
"""
#: How long a node may take to start and register, before the machine's load stretches it.
NODE_START_S = 120.0
WORKERS = ("node_a", "node_b")


def scaled(seconds: float) -> float:
    """A wait stretched by the machine's load (as the suite's timeouts are)."""
    return seconds * min(max(machine_load(), 1.0), 4.0)


@dataclass
class Node:
    """One ``ray start --block`` process group and its temporary directory."""

    name: str
    proc: subprocess.Popen
    temp_dir: str

    def kill(self) -> None:
        """Kill the whole node at once (SIGKILL to its process group), as a lost machine would end."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        subprocess.run(["pkill", "-9", "-f", self.temp_dir], check=False)


@dataclass
class LocalCluster:
    """Addresses of a running local cluster and its nodes by name (``head``, ``node_a``, ``node_b``)."""

    gcs: str
    dashboard: str
    env: dict
    nodes: dict[str, Node] = field(default_factory=dict)

    def alive_nodes(self) -> list[dict]:
        """Live nodes as the dashboard's state API lists them."""
        with urllib.request.urlopen(f"{self.dashboard}/api/v0/nodes?limit=100", timeout=10) as reply:
            rows = json.load(reply)["data"]["result"]["result"]
        return [row for row in rows if row["state"] == "ALIVE"]

    def node_id(self, name: str) -> str:
        """The Ray node id of the worker node offering custom resource ``name``."""
        for row in self.alive_nodes():
            if name in row.get("resources_total", {}):
                return row["node_id"]
        raise LookupError(f"no live node offers {name}")

    def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` nodes are alive (bounded)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if len(self.alive_nodes()) == count:
                    return
            except OSError:
                pass
            dead = [n.name for n in self.nodes.values() if n.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the local cluster did not reach {count} live nodes within {timeout_s:.0f} s "
                                   f"(exited: {dead or 'none'})")
            time.sleep(1)

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.kill()
            shutil.rmtree(node.temp_dir, ignore_errors=True)


def _start(name: str, args: list[str], env: dict) -> Node:
    temp_dir = tempfile.mkdtemp(prefix=f"mn-{name}-", dir="/tmp")
    cmd = [sys.executable, "-c", RAY_START, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
           f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return Node(name, proc, temp_dir)


def start_local_cluster() -> LocalCluster:
    """Start the head, wait for its dashboard, then the two worker nodes, and wait for all three."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", env)
    try:
        cluster.nodes["head"] = _start("head", [
            "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={free_port()}"], env)
        cluster.wait_for_nodes(1, scaled(NODE_START_S))
        for name in WORKERS:
            cluster.nodes[name] = _start(name, [f"--address={cluster.gcs}", "--num-cpus=1",
                                                f"--resources={json.dumps({name: 1})}"], env)
        cluster.wait_for_nodes(3, scaled(NODE_START_S))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def local_cluster():
    """A three-node cluster shared by a module's tests (a test that kills a node comes last)."""
    cluster = start_local_cluster()
    yield cluster
    cluster.stop()
