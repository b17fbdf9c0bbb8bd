"""Wall time per stage and peak memory of the real-scale run (``niclip-ray demo --full``).

Runs the command as a user does, in a fresh process on an embedded Ray, samples the resident
memory of its whole process tree (driver, raylet, Ray workers) every second, and prints
the time of each stage (the run's ``evaluation/times.json``), the image and text stages'
throughput, and the peak. The reference approach is the paper's single-node pipeline,
which is not runnable here at this scale (dense MKDA volumes for every study alone need
80+ GB, ``docs/method.md``), so the figures stand against the issue's budget: the whole run
under 30 minutes on 2 CPUs, image features at 1,000 studies/s or more.

Usage: python benchmarks/bench_full_run.py --data-dir DIR [--out DIR] [--quick]
(DIR holds nimare/ and cognitive_atlas/; a rerun into the same --out reuses finished stages,
so time a fresh --out.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

STAGE_LINE = re.compile(r"^(images|text): (\d+) ok, (\d+) failed rows .* -> (\S+) \[([\d.]+) s\]$")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="the ~2,000-study subsample")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="niclip-full-")) / "full"
    command = [sys.executable, "-m", "niclip_ray", "demo", "--full", "--data-dir", str(args.data_dir),
               "--out", str(out), *(["--quick"] if args.quick else [])]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rates = []
    for line in proc.stdout:
        match = STAGE_LINE.match(line.strip())
        if match:
            stage, ok, failed, where, seconds = match.groups()
            rates.append((f"{stage} ({Path(where).parent.name if stage == 'text' else 'MKDA + DiFuMo'})",
                          int(ok) + int(failed), float(seconds)))
    proc.wait()
    wall = time.perf_counter() - started
    sampler.join(timeout=5)
    if proc.returncode:
        raise SystemExit(f"the run failed (exit {proc.returncode}); its logs are in {out / 'logs'}")
    times = json.loads((out / "evaluation" / "times.json").read_text())
    print(f"niclip-ray demo --full{' --quick' if args.quick else ''}: {wall / 60:.1f} min wall, "
          f"peak {peak[0] / 2**30:.2f} GiB (process tree)")
    for stage, seconds in times.items():
        print(f"  {stage:<28} {seconds:8.1f} s")
    for stage, n, seconds in rates:
        print(f"  {stage:<28} {n / seconds:8.0f} studies/s ({n} in {seconds:.1f} s, actor start included)")


if __name__ == "__main__":
    main()
