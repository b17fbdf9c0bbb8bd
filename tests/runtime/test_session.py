"""The runtime: embedded Ray starts and stops cleanly, twice in one process; worker env; pool sizing."""

import subprocess
import sys
import textwrap

import pytest

from niclip_ray.errors import ConfigError
from niclip_ray.runtime import RayOptions, describe_mode
from niclip_ray.runtime.session import (
    actor_pool_shape,
    check_fits_a_node,
    check_reachable,
    largest_node_cpus,
    object_store_bytes,
)


def test_embedded_ray_starts_and_stops_twice_in_one_process():
    script = textwrap.dedent(
        """
        import ray
        from niclip_ray.runtime import RayOptions, ray_session
        for _ in range(2):
            with ray_session(RayOptions(num_cpus=1, object_store_mb=128, quiet=True)):
                assert ray.is_initialized()
                assert ray.cluster_resources()["CPU"] == 1
                ctx = ray.data.DataContext.get_current()
                assert ctx.wait_for_min_actors_s > 0 and ctx.execution_no_progress_timeout_s > 0
                assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60) == 42
                # workers draw no tqdm bars (they have no terminal)
                worker_env = ray.remote(lambda: __import__("os").environ.get("TQDM_DISABLE"))
                assert ray.get(worker_env.remote(), timeout=60) == "1"
            assert not ray.is_initialized()
        print("OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("OK")


def test_unreachable_address_is_a_config_error():
    script = textwrap.dedent(
        """
        import os
        os.environ["NICLIP_CONNECT_TIMEOUT_S"] = "3"
        from niclip_ray.errors import ConfigError
        from niclip_ray.runtime import RayOptions, ray_session
        try:
            with ray_session(RayOptions(address="127.0.0.1:1")):
                pass
        except ConfigError as exc:
            print("CONFIG", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert "CONFIG no Ray cluster answers at 127.0.0.1:1" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("address", ["nonsense", "host:port", "ray://:10001"])
def test_malformed_address(address):
    with pytest.raises(ConfigError, match="invalid Ray address"):
        check_reachable(address)


def test_describe_mode(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the session fixture may be running
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert describe_mode(RayOptions(num_cpus=2)) == "embedded local Ray (2 CPUs, dashboard off)"
    assert describe_mode(RayOptions(address="auto")) == "connect to the Ray cluster at auto"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert "10.0.0.1:6379" in describe_mode(RayOptions())


def test_object_store_is_bounded():
    size = object_store_bytes()
    assert 128 * 2**20 <= size <= 2048 * 2**20


def test_actor_pool_never_takes_every_cpu(ray_local):
    n, cpus = actor_pool_shape(None)
    assert n * cpus < 2
    n, cpus = actor_pool_shape(4, 2.0)
    assert n == 4 and n * cpus <= 1.5
    n, cpus = actor_pool_shape(1, 0.5)
    assert (n, cpus) == (1, 0.5)
    assert actor_pool_shape(None, 1.0, limit=30)[0] == 2  # one per CPU, not one per shard
    assert actor_pool_shape(None, 0.25, limit=3) == (3, 0.25)
    assert largest_node_cpus() == 2.0
    check_fits_a_node("a train worker", 2.0)


def test_requests_are_sized_from_one_node_not_the_cluster_sum(monkeypatch):
    import niclip_ray.runtime.session as session

    monkeypatch.setattr(session, "cluster_cpus", lambda: 2.0)  # a head with no CPUs and two 1-CPU workers
    monkeypatch.setattr(session, "largest_node_cpus", lambda: 1.0)
    assert actor_pool_shape(1, 2.0) == (1, 1.0)
    assert actor_pool_shape(None) == (2, 0.75)
    check_fits_a_node("a train worker", 1.0)
    with pytest.raises(ConfigError, match=r"^a train worker asks for 1.5 CPUs but the largest node of the cluster "
                                          r"has 1: ask for at most 1$"):
        check_fits_a_node("a train worker", 1.5)


def test_actor_pool_shape_needs_cpus(monkeypatch):
    import niclip_ray.runtime.session as session

    monkeypatch.setattr(session, "cluster_cpus", lambda: 0.0)
    with pytest.raises(ConfigError, match="no CPUs"):
        actor_pool_shape(1)
