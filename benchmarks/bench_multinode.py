"""The image-feature stage on 1 vs 2 worker nodes of 1 CPU each, and the cost of a Ray Job.

A local cluster (:mod:`niclip_ray._local_cluster`: a head without CPUs and 1-CPU worker
nodes, all on 127.0.0.1) runs ``embed images`` on synthetic studies shaped like the real
corpus (19,148 studies, 34.5 peaks each on average: Neurosynth + NeuroQuery), first with one
worker node, then with a second one added; each run is a driver joining with ``--address
HOST:PORT``. Printed: the stage's own seconds (its summary line), studies/s and the ratio.
Then the same small command (``--job-studies`` studies) as a direct driver and as a Ray Job
(``--address http://...``): the Job path's extra wall time.

On one machine both "nodes" share its CPUs, so the ratio says what a second node buys here
(at most 2x, less what the head and the driver take), not on real hardware.

Usage: python benchmarks/bench_multinode.py [--studies 19148] [--dim 64] [--job-studies 500]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from niclip_ray._local_cluster import start_local_cluster
from niclip_ray.atlas.difumo import build_standin, default_standin_dir

PEAKS_PER_STUDY = 34.5


def synthetic_corpus(path: Path, n_studies: int, seed: int = 0) -> Path:
    """``n_studies`` studies with Poisson(34.5) peaks (at least 1) uniform in the MNI box."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:06d}" for i in range(n_studies)]
    counts = np.maximum(rng.poisson(PEAKS_PER_STUDY, n_studies), 1)
    xyz = rng.uniform([-70, -100, -45], [70, 70, 80], (int(counts.sum()), 3)).round(1)
    study = np.repeat(ids, counts)
    path.mkdir(parents=True)
    pd.DataFrame({"study_id": study, "analysis_id": study, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                  "space_in": "MNI"}).to_parquet(path / "coordinates.parquet", index=False)
    studies = pd.DataFrame({"study_id": ids, "abstract": "", "pmid": "", "title": "", "body": "", "source": "",
                            "label": "", "n_analyses": 1, "n_peaks": counts})
    studies.to_parquet(path / "studies.parquet", index=False)
    return path


def embed(cluster, address: str, corpus: Path, out: Path, dim: int, extra: list[str] = ()) -> tuple[float, float]:
    """Run ``embed images``; return (wall seconds, the stage's own seconds from its summary line).

    The command gets the cluster's environment: with multi-node clusters switched off for
    it, Ray keeps a driver's 127.0.0.1 address instead of swapping in the machine's (where
    this cluster does not listen).
    """
    argv = [sys.executable, "-m", "niclip_ray", "--address", address, *extra, "embed", "images", "--corpus",
            str(corpus), "--dim", str(dim), "--atlas-dir", str(default_standin_dir(0)), "--standin", "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=cluster.env)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"embed images failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    seconds = re.search(r"images: .* \[([\d.]+) s\]", done.stdout)
    return wall, float(seconds.group(1)) if seconds else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=19148)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--job-studies", type=int, default=500)
    args = parser.parse_args()
    build_standin(default_standin_dir(0), args.dim, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-multinode-") as tmp:
        root = Path(tmp)
        corpus = synthetic_corpus(root / "corpus", args.studies)
        small = synthetic_corpus(root / "small", args.job_studies, seed=1)
        workdir = root / "workdir"
        workdir.mkdir()
        cluster = start_local_cluster(workers=("node_a",))
        try:
            rates = {}
            for nodes in (1, 2):
                if nodes == 2:
                    cluster.add_worker("node_b")
                wall, stage = embed(cluster, cluster.gcs, corpus, root / f"images-{nodes}", args.dim)
                rates[nodes] = args.studies / stage
                print(f"{nodes} worker node(s): stage {stage:.1f} s ({rates[nodes]:.0f} studies/s), "
                      f"command {wall:.1f} s")
            print(f"2 vs 1 node: {rates[2] / rates[1]:.2f}x studies/s ({args.studies} studies, DiFuMo-{args.dim})")
            direct, _ = embed(cluster, cluster.gcs, small, root / "direct", args.dim)
            job, _ = embed(cluster, cluster.dashboard, small, root / "job", args.dim, ["--working-dir", str(workdir)])
            print(f"{args.job_studies} studies: direct driver {direct:.1f} s, Ray Job {job:.1f} s "
                  f"(+{job - direct:.1f} s for the Job path)")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
