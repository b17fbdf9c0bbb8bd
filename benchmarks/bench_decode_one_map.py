"""Wall time of ``niclip-ray decode`` on one map: in this process (the default) against Ray.

Runs the command as a user does, in a fresh interpreter each time, on nilearn's motor map
with a bundle (``--bundle``, default: a toy bundle and toy atlas built here): once with
``--ray`` (an embedded Ray is started, one actor decodes) and once without (a few maps are
decoded in the process). Reports the median of ``--repeats`` runs of each and their ratio.

Usage: python benchmarks/bench_decode_one_map.py [--bundle DIR --atlas-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nilearn.datasets import load_sample_motor_activation_image


def time_decode(bundle: Path, atlas_dir: Path, out: Path, extra: list[str]) -> float:
    """Seconds of one ``niclip-ray decode`` run, interpreter start included."""
    command = [sys.executable, "-m", "niclip_ray", "--quiet", "decode", load_sample_motor_activation_image(),
               "--model", str(bundle), "--atlas-dir", str(atlas_dir), "--out", str(out), "--standin", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--atlas-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.bundle is None:
            from niclip_ray._testing import toy_bundle

            args.bundle, args.atlas_dir = toy_bundle(tmp / "bundle", tmp / "atlas"), tmp / "atlas"
        times = {"ray": [], "in process": []}
        for i in range(args.repeats):
            times["ray"].append(time_decode(args.bundle, args.atlas_dir, tmp / f"ray-{i}", ["--ray"]))
            times["in process"].append(time_decode(args.bundle, args.atlas_dir, tmp / f"here-{i}", []))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode, value in medians.items():
        print(f"{mode:>10}: median {value:.1f} s over {args.repeats} runs ({', '.join(f'{t:.1f}' for t in times[mode])})")
    print(f"in process is {medians['ray'] / medians['in process']:.1f}x faster than starting Ray for one map")


if __name__ == "__main__":
    main()
