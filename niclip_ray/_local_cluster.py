"""A real multi-node Ray cluster on this machine, as Ray's own multi-node tests run one.

Private support for ``tests/multinode/`` and ``benchmarks/bench_multinode.py``, not part of
the API. A head that offers no CPUs for work and worker nodes of 1 CPU each (a custom
resource named after each node tells them apart), every process on 127.0.0.1 and in its own
temporary directory. Each node is a ``ray start --block`` in its own process group, so a
node can be killed whole (its process tree: raylet, object store and workers) and
:meth:`LocalCluster.stop` ends exactly what was started, never another Ray on the machine.
"""

from __future__ import annotations

import contextlib
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

from niclip_ray.runtime.cluster import free_port

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
WORKERS = ("node_a", "node_b")


@dataclass
class Node:
    """One ``ray start --block`` process group and its temporary directory."""

    name: str
    proc: subprocess.Popen
    temp_dir: str

    def kill(self) -> None:
        """Kill the whole node at once, as a lost machine would end: every process it started, SIGKILL.

        Its process group and, at the same moment, every descendant: the raylet starts its
        workers in groups of their own, and they rename themselves (``ray::...``), so
        neither the group nor the directory in a command line finds them.
        """
        import psutil

        if self.proc.poll() is None:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for process in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            self.proc.wait(timeout=30)
        subprocess.run(["pkill", "-9", "-f", self.temp_dir], check=False)

    def remove(self) -> None:
        """Kill the node (if it still runs) and delete its directory."""
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


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

    def wait_for_nodes(self, count: int, timeout_s: float, gone: frozenset[str] = frozenset()) -> None:
        """Wait until ``count`` nodes are alive, none of them in ``gone`` (node ids of lost nodes); bounded."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                alive = {row["node_id"] for row in self.alive_nodes()}
                if len(alive) == count and not alive & gone:
                    return
            except OSError:
                pass
            dead = [n.name for n in self.nodes.values() if n.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the local cluster did not reach {count} live nodes within {timeout_s:.0f} s "
                                   f"(exited: {dead or 'none'})")
            time.sleep(1)

    def add_worker(self, name: str, cpus: float = 1.0, timeout_s: float = 120.0,
                   gone: frozenset[str] = frozenset()) -> None:
        """Start a worker node offering ``cpus`` and custom resource ``name``, and wait until it is alive.

        ``gone``: ids of lost nodes that Ray may still count alive; the wait outlasts them.
        """
        self.nodes[name] = _start(name, [f"--address={self.gcs}", f"--num-cpus={cpus:g}",
                                         f"--resources={json.dumps({name: 1})}"], self.env)
        self.wait_for_nodes(len(self.nodes), timeout_s, gone)

    def replace_lost_workers(self, timeout_s: float = 120.0) -> list[str]:
        """Start a fresh node for each worker node that no longer runs (as an autoscaler would); their names.

        The lost node's directory is removed. Waits, bounded, until the fresh node is alive
        and Ray no longer counts the lost one (it does until its health checks run out).
        """
        lost = [name for name, node in self.nodes.items() if name != "head" and node.proc.poll() is not None]
        for name in lost:
            stale = frozenset(row["node_id"] for row in self.alive_nodes() if name in row.get("resources_total", {}))
            self.nodes[name].remove()
            self.add_worker(name, timeout_s=timeout_s, gone=stale)
        return lost

    def stop(self) -> None:
        """Kill every node this cluster started and remove their directories."""
        for node in reversed(list(self.nodes.values())):
            node.remove()


def _start(name: str, args: list[str], env: dict) -> Node:
    temp_dir = tempfile.mkdtemp(prefix=f"mn-{name}-", dir="/tmp")
    cmd = [sys.executable, "-c", RAY_START, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
           f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return Node(name, proc, temp_dir)


def start_local_cluster(workers: tuple[str, ...] = WORKERS, timeout_s: float = 120.0) -> LocalCluster:
    """Start the head, wait for its dashboard, then one 1-CPU worker node per name, and wait for all.

    Each wait is bounded by ``timeout_s``; on any failure every node started is killed.
    """
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", env)
    try:
        cluster.nodes["head"] = _start("head", [
            "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={free_port()}"], env)
        cluster.wait_for_nodes(1, timeout_s)
        for name in workers:
            cluster.add_worker(name, timeout_s=timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster
