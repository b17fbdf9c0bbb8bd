"""Shared fixtures: one embedded Ray for the whole session, sized for a 2-CPU machine."""

import os

# Fail fast instead of hanging (read when niclip_ray.runtime is imported).
os.environ.setdefault("NICLIP_WAIT_FOR_ACTORS_S", "120")
os.environ.setdefault("NICLIP_NO_PROGRESS_TIMEOUT_S", "300")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """Ship test modules to Ray workers by value: workers cannot import them by name."""
    from ray import cloudpickle

    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture(scope="session")
def ray_local():
    """An embedded Ray with 2 CPUs and a small object store, shared by all Ray tests."""
    import ray

    from niclip_ray.runtime.session import configure_data_context

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20)
    configure_data_context(quiet=True)
    yield
    ray.shutdown()
