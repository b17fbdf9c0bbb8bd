"""The embedded Ray is private to the machine and to its user, and leaves no files behind.

One embedded Ray is started in a subprocess (its own HOME, token auth left at Ray's
default) and reports what its processes listen on and the modes of its directories; the
tests check its answers. Then the real ``decode`` and ``serve`` commands run while every
socket their process trees listen on is recorded.
"""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.runtime.auth import ensure_private_token
from tests.conftest import LOOPBACK, tree_listening

PROBE = textwrap.dedent(
    """
    import json, os, socket, urllib.request
    import psutil, ray
    from niclip_ray.runtime import RayOptions, ray_session

    def listening():
        me = psutil.Process()
        names = {p.pid: p.name() for p in [me, *me.children(recursive=True)]}
        return sorted({(c.laddr.ip, c.laddr.port, names[c.pid]) for c in psutil.net_connections(kind="inet")
                       if c.status == psutil.CONN_LISTEN and c.pid in names})

    def answers_metrics(host, port):
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as response:
                return response.status == 200
        except Exception:
            return False

    def connects(host, port):
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    def held_elsewhere(mine):  # ports another process (another Ray on this machine) listens on off loopback
        return {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
                and c.pid not in mine and not c.laddr.ip.startswith(("127.", "::ffff:127."))}

    def mode(path):
        return oct(os.stat(path).st_mode & 0o777)

    external = sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                       if a.family == socket.AF_INET and not a.address.startswith("127.")})
    with ray_session(RayOptions(num_cpus=1, object_store_mb=128, quiet=True)):
        assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60) == 42
        node = ray._private.worker._global_node
        sockets = listening()
        me = psutil.Process()
        others = held_elsewhere({p.pid for p in [me, *me.children(recursive=True)]})
        session = node.get_session_dir_path()
        report = {
            "private_mode": mode(os.path.dirname(node.get_temp_dir_path())),
            "ray_modes": {name: mode(os.path.join(session, name)) for name in ("..", ".", "logs", "sockets")},
            "node_ip": node.node_ip_address,
            "temp_dir": node.get_temp_dir_path(),
            "session_dir": node.get_session_dir_path(),
            "listening": sockets,
            "metrics_on_loopback": [port for _, port, _ in sockets if answers_metrics("127.0.0.1", port)],
            "external": external,
            "reachable_from_outside": [(ip, port) for ip in external for _, port, _ in sockets
                                       if port not in others and connects(ip, port)],
        }
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), home


def test_every_process_listens_on_loopback_only(embedded):
    report, _ = embedded
    assert report["node_ip"] == "127.0.0.1"
    addresses = {ip for ip, _, _ in report["listening"]}
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, report["listening"]
    names = {name for _, _, name in report["listening"]}
    assert {"gcs_server", "raylet", "ray::DashboardAgent"} <= names


def test_metrics_endpoints_answer_on_loopback_and_nowhere_else(embedded):
    report, _ = embedded
    # Up to three: the metrics agent, and the autoscaler's and dashboard head's fixed ports
    # (44217, 44227), which another Ray on this machine may hold.
    assert 1 <= len(report["metrics_on_loopback"]) <= 3
    assert report["reachable_from_outside"] == []


def test_its_directories_are_private_to_this_user(embedded):
    """Ray makes its directories 0777 again whenever a worker starts; they sit in a 0700 one of ours."""
    report, _ = embedded
    assert report["private_mode"] == "0o700", report
    assert os.path.basename(os.path.dirname(report["temp_dir"])).startswith("niclip-ray-")


def test_the_generated_auth_token_is_readable_by_its_owner_only(embedded):
    _, home = embedded
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text()) == 64


def test_the_session_files_are_removed_at_exit(embedded):
    report, _ = embedded
    private = os.path.dirname(report["temp_dir"])
    assert report["session_dir"].startswith(report["temp_dir"] + os.sep)
    assert not os.path.exists(private)


def test_an_existing_token_is_tightened_and_a_disabled_auth_writes_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert ensure_private_token() is None
    assert not (tmp_path / ".ray").exists()
    monkeypatch.delenv("RAY_AUTH_MODE")
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("a" * 64)
    token.chmod(0o644)
    assert ensure_private_token() == token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == "a" * 64


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def watch(args, env, ready_url=None, timeout=420) -> tuple[set, int, str]:
    """Run a CLI command, recording the sockets its process tree listens on until it ends.

    With ``ready_url`` (a service), the command is stopped with SIGINT once the URL has
    answered and a few more samples were taken.
    """
    process = psutil.Popen([sys.executable, "-m", "niclip_ray", *args], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, deadline, ready_samples = set(), time.monotonic() + timeout, 0
    while process.poll() is None and time.monotonic() < deadline:
        seen |= tree_listening(process)
        if ready_url and answers(ready_url):
            ready_samples += 1
            if ready_samples > 5:
                process.send_signal(signal.SIGINT)
                break
        time.sleep(0.3)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return seen, process.returncode, stderr.decode(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    """Sockets listened on while ``decode --ray`` and ``serve`` ran (toy bundle, own HOME)."""
    root = tmp_path_factory.mktemp("commands")
    bundle = toy_bundle(root / "bundle", root / "atlas")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["HOME"] = str(root / "home")
    motor = load_sample_motor_activation_image()
    decode = watch(["decode", motor, "--model", str(bundle), "--atlas-dir", str(root / "atlas"),
                    "--out", str(root / "decoded"), "--ray", "--standin"], env)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = watch(["serve", "--model", str(bundle), "--atlas-dir", str(root / "atlas"), "--port", str(port)], env,
                  ready_url=f"http://127.0.0.1:{port}/healthz")
    return {"decode": decode, "serve": serve}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["decode", "serve"])
def test_every_socket_of_decode_and_serve_is_on_loopback(commands, command):
    seen, returncode, stderr = commands[command]
    assert returncode == 0, stderr
    names = {name for _, _, name in seen}
    assert "raylet" in names and (command != "serve" or any("ServeReplica" in n for n in names)), names
    assert {ip for ip, _, _ in seen} <= LOOPBACK, sorted(s for s in seen if s[0] not in LOOPBACK)
