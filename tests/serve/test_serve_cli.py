"""``niclip-ray serve`` from the command line: argument errors, and a real run stopped by Ctrl-C."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.cli.main import run

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
