"""Cold start: how long the first answers take, from the CLI and from a freshly started service.

* **errors**: the wall time of ``decode`` with each early mistake (a missing map, a missing
  bundle, a folder that is not a bundle, a stand-in bundle without ``--standin``, a missing
  ``--atlas-dir``) and of ``niclip-ray --help``, each in a fresh process, best of 3;
* **search CLI**: one ``search text`` against an index, in a fresh process;
* **service**: ``niclip-ray serve --index`` started in a subprocess: seconds until
  ``/healthz`` says ok, then the first and second ``/v1/search/text``.

Usage: python benchmarks/bench_cold_start.py --bundle work/demo/train/bundle --index work/demo/index
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from nilearn.datasets import load_sample_motor_activation_image

CLI = [sys.executable, "-m", "niclip_ray"]


def wall(args: list[str], repeats: int = 3) -> tuple[float, str]:
    """Best wall time of a CLI command over ``repeats`` fresh processes, and its last stderr line."""
    best, last = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - start)
        last = (done.stderr.strip().splitlines() or [""])[-1]
    return best, last


def early_errors(bundle: Path, scratch: Path) -> dict:
    motor = load_sample_motor_activation_image()
    out = ["--out", str(scratch / "out")]
    cases = {
        "--help": ["--help"],
        "missing map": ["decode", str(scratch / "typo.nii.gz"), "--model", str(bundle), *out],
        "missing bundle": ["decode", motor, "--model", str(scratch / "nope"), *out],
        "not a bundle": ["decode", motor, "--model", str(scratch), *out],
        "stand-in refused": ["decode", motor, "--model", str(bundle), *out],
        "missing --atlas-dir": ["decode", motor, "--model", str(bundle), "--standin", "--atlas-dir",
                                str(scratch / "nowhere"), *out],
    }
    found = {}
    for name, args in cases.items():
        seconds, line = wall(args)
        found[name] = {"seconds": round(seconds, 2), "said": line[:120], "left_output": (scratch / "out").exists()}
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service(bundle: Path, index: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, "-q", "serve", "--model", str(bundle), "--index", str(index), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        loading_seen = False
        while True:
            try:
                answer = requests.get(f"{url}/healthz", timeout=5)
                loading_seen |= answer.status_code == 503
                if answer.status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the proxy waits for the application
                pass
            if proc.poll() is not None or time.perf_counter() - start > 600:
                raise RuntimeError("the service did not come up")
            time.sleep(0.2)
        ready = time.perf_counter() - start
        times = []
        for query in ("working memory load", "face perception"):
            t0 = time.perf_counter()
            assert requests.get(f"{url}/v1/search/text", params={"q": query, "top_k": 5}, timeout=120).ok
            times.append(time.perf_counter() - t0)
        return {"healthz_ok_s": round(ready, 1), "said_loading_first": loading_seen,
                "first_search_s": round(times[0], 2), "second_search_s": round(times[1], 2)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = {"early_errors": early_errors(args.bundle, Path(scratch))}
        start = time.perf_counter()
        done = subprocess.run([*CLI, "-q", "search", "text", "working memory", "--index", str(args.index),
                               "--model", str(args.bundle), "--out", str(Path(scratch) / "wm.nii.gz")],
                              capture_output=True, text=True, check=False)
        report["search_text_cli"] = {"seconds": round(time.perf_counter() - start, 1), "exit": done.returncode}
        report["service"] = service(args.bundle, args.index)
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
