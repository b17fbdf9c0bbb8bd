"""The multi-node tests' cluster: :mod:`niclip_ray._local_cluster`, three nodes, per module."""

from __future__ import annotations

import pytest

from niclip_ray._local_cluster import start_local_cluster
from tests.conftest import machine_load

#: How long a node may take to start and register, before the machine's load stretches it.
NODE_START_S = 120.0


def scaled(seconds: float) -> float:
    """A wait stretched by the machine's load (as the suite's timeouts are)."""
    return seconds * min(max(machine_load(), 1.0), 4.0)


@pytest.fixture(scope="module")
def local_cluster():
    """A head without CPUs and two 1-CPU worker nodes, shared by a module's tests (a test that kills a node comes last)."""
    cluster = start_local_cluster(timeout_s=scaled(NODE_START_S))
    yield cluster
    cluster.stop()
