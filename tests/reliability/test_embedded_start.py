"""Starting the embedded Ray: a start that times out is tried again, leftovers of killed runs are removed.

``ray.init`` is replaced by a stand-in here (no Ray starts); what a real start does to its
directory and sockets is checked in ``test_embedded_ray_exposure.py``.
"""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from niclip_ray.errors import ConfigError
from niclip_ray.runtime import private, session
from niclip_ray.runtime.private import OWNER_FILE, TEMP_PREFIX, remove_stale_temp_dirs

WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
TIMED_OUT = ("The current node timed out during startup. This could happen because some of the raylet failed "
             "to startup or the GCS has become overloaded.")


@pytest.fixture
def parent(tmp_path, monkeypatch):
    """RAY_TMPDIR and HOME in a temporary folder, so no real Ray directory or token is touched.

    ``ray.is_initialized`` and ``ray.shutdown`` are stand-ins too: a failed start shuts Ray
    down, which must not end the suite's shared Ray.
    """
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", WAIT_ENV):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "ray").mkdir()
    return tmp_path / "ray"


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def plant(parent, name, owner=None, age_s=0.0):
    path = parent / f"{TEMP_PREFIX}{name}"
    (path / "session_1" / "logs").mkdir(parents=True)
    if owner is not None:
        (path / OWNER_FILE).write_text(json.dumps(owner))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_directories_whose_owner_is_gone_are_removed_and_the_others_kept(parent):
    me = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    dead = plant(parent, "dead", {"pid": dead_pid(), "started": 0.0})
    reused = plant(parent, "reused", {"pid": os.getpid(), "started": me["started"] - 1000})  # a reused pid
    old_unowned = plant(parent, "old", age_s=2 * private.UNOWNED_GRACE_S)
    alive = plant(parent, "alive", me)
    young_unowned = plant(parent, "young")
    not_a_dir = parent / f"{TEMP_PREFIX}file"
    not_a_dir.write_text("x")
    removed = remove_stale_temp_dirs(parent)
    assert sorted(removed) == sorted([dead, reused, old_unowned])
    assert all(not p.exists() for p in removed)
    assert alive.is_dir() and young_unowned.is_dir() and not_a_dir.is_file()


def test_an_old_directory_without_owner_is_kept_while_a_process_names_it(parent):
    named = plant(parent, "named", age_s=2 * private.UNOWNED_GRACE_S)
    holder = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(60)", f"--temp-dir={named}"])
    try:
        assert remove_stale_temp_dirs(parent) == [] and named.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temp_dirs(parent) == [named]


class FakeInit:
    """Stands in for ``ray.init``: raises the given errors in turn, then succeeds."""

    def __init__(self, *errors):
        self.errors, self.temp_dirs, self.gcs_wait = list(errors), [], []

    def __call__(self, **kwargs):
        self.temp_dirs.append(kwargs["_temp_dir"])
        self.gcs_wait.append(os.environ.get(WAIT_ENV))
        if self.errors:
            raise self.errors.pop(0)


def test_a_start_that_times_out_is_tried_again_in_a_fresh_private_directory(parent, monkeypatch):
    import ray

    stale = plant(parent, "killed", {"pid": dead_pid(), "started": 0.0})
    fake = FakeInit(Exception(TIMED_OUT))
    monkeypatch.setattr(ray, "init", fake)
    monkeypatch.setattr(session, "START_ATTEMPTS", 2)
    temp_dir = session.start_embedded(session.RayOptions(num_cpus=1, object_store_mb=128))
    assert not stale.exists()
    assert len(fake.temp_dirs) == 2 and fake.temp_dirs[1] == str(temp_dir / session.RAY_SUBDIR)
    assert not os.path.exists(os.path.dirname(fake.temp_dirs[0])) and temp_dir.is_dir()
    assert oct(temp_dir.stat().st_mode & 0o777) == "0o700"
    assert json.loads((temp_dir / OWNER_FILE).read_text())["pid"] == os.getpid()
    assert fake.gcs_wait == [str(int(session.START_TIMEOUT_S))] * 2
    assert WAIT_ENV not in os.environ


def test_every_attempt_timing_out_says_the_machine_is_overloaded_and_how_to_allow_more(parent, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", FakeInit(Exception(TIMED_OUT), Exception(TIMED_OUT)))
    monkeypatch.setattr(session, "START_ATTEMPTS", 2)
    with pytest.raises(ConfigError) as info, session.ray_session(session.RayOptions(num_cpus=1, object_store_mb=128)):
        pytest.fail("the body must not run")
    message = str(info.value)
    assert "did not start in 2 attempt(s)" in message and "overloaded" in message and "load average" in message
    assert "NICLIP_RAY_START_ATTEMPTS" in message and "\n" not in message
    assert list(parent.iterdir()) == []


def test_a_start_that_fails_otherwise_is_not_tried_again(parent, monkeypatch):
    import ray

    fake = FakeInit(ValueError("num_cpus must be positive"))
    monkeypatch.setattr(ray, "init", fake)
    with pytest.raises(ConfigError, match="could not start or join an embedded local Ray: num_cpus"), \
            session.ray_session(session.RayOptions(num_cpus=1, object_store_mb=128)):
        pytest.fail("the body must not run")
    assert len(fake.temp_dirs) == 1 and list(parent.iterdir()) == []
