"""``niclip-ray serve`` from the command line: argument errors, and a real run stopped by Ctrl-C."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.cli.main import run
from tests.conftest import stop_ray_head

from .conftest import free_port

pytestmark = pytest.mark.timeout(600)


def test_argument_errors_are_one_line(toy, tmp_path, capsys):
    bundle, atlas = toy
    assert run(["serve"]) == 1
    assert "--model is required" in capsys.readouterr().err
    assert run(["serve", "--model", str(bundle), "--atlas-dir", str(atlas), "--detach"]) == 1
    assert "--detach needs a cluster" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert run(["serve", "--model", str(bundle), "--token-file", str(tmp_path / "empty")]) == 1
    assert "is empty" in capsys.readouterr().err
    assert run(["serve", "status"]) == 1
    assert "--address" in capsys.readouterr().err
    assert run(["serve", "--help"]) == 0
    assert "/v1/decode" in capsys.readouterr().out


def test_serve_runs_until_sigterm_and_stops_quietly(toy, tmp_path):
    """SIGTERM (``kill PID``, a process manager) takes the same path as Ctrl-C (SIGINT's KeyboardInterrupt)."""
    bundle, atlas = toy
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "niclip_ray", "--num-cpus", "2", "serve", "--model", str(bundle),
         "--atlas-dir", str(atlas), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any(f"at {url}/" in line for line in lines):  # printed once /healthz answers
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.5)
        motor = Path(load_sample_motor_activation_image()).read_bytes()
        assert requests.post(f"{url}/v1/decode", data=motor, timeout=120).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(lines)
        reader.join(timeout=10)
        assert any("stopping the service" in line for line in lines)
        assert not any("Traceback" in line for line in lines), "".join(lines)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def ray_head_gcs(tmp_path):
    """A real local Ray head (``ray start --head``); yields its GCS address; torn down by process group."""
    gcs = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
           "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield f"127.0.0.1:{gcs}", env
    finally:
        stop_ray_head(proc, temp)


def test_detached_service_on_a_cluster_is_managed_by_status_and_stop(ray_head_gcs, toy):
    address, env = ray_head_gcs
    bundle, atlas = toy
    port = free_port()
    env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def cli(*args, timeout=300):
        return subprocess.run([sys.executable, "-m", "niclip_ray", "--address", address, *args], env=env,
                              capture_output=True, text=True, timeout=timeout)

    deadline = time.monotonic() + 120
    while (status := cli("serve", "status", timeout=120)).returncode != 0:  # the head is still starting
        assert time.monotonic() < deadline, status.stderr
        time.sleep(2)
    assert "no niclip service is deployed" in status.stdout
    started = cli("serve", "--model", str(bundle), "--atlas-dir", str(atlas), "--port", str(port), "--detach")
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    assert requests.get(f"{url}/healthz", timeout=30).status_code == 200  # still up after the CLI returned
    motor = Path(load_sample_motor_activation_image()).read_bytes()
    assert requests.post(f"{url}/v1/decode", data=motor, timeout=120).status_code == 200
    status = cli("serve", "status")
    assert status.returncode == 0 and "RUNNING" in status.stdout.upper(), status.stdout + status.stderr
    stopped = cli("serve", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "no niclip service is deployed" in cli("serve", "status").stdout
