"""Image features: our sparse MKDA + cached least squares vs NiMARE images + NiftiMapsMasker.

Both approaches turn the same studies (NiMARE's shipped n-back/flanker studyset, repeated
to reach N) into DiFuMo-space vectors with the same atlas (the stand-in of the chosen
dimension, on NiMARE's 2 mm grid):

* reference: ``MKDAKernel(r=10, value=1).transform(..., return_type="image")`` then
  ``NiftiMapsMasker(maps, standardize=False).fit_transform(images)`` (paper-era NiCLIP);
* ours: ``study_voxels`` (sparse sphere indices) then ``Projector.project_voxels`` in shards
  of 256 studies, as the Ray stage runs them.

Each measurement runs in its own single-threaded process (BLAS/OpenMP/numba threads = 1),
so throughput is per core and peak memory is that process's max RSS. Our projector's
one-time construction (reading the atlas, X'X and its Cholesky factor) is reported apart.

Usage: python benchmarks/bench_image_features.py [--dim 64] [--n-ref 100] [--n-ours 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINGLE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def repeated_peaks(coords_path: str, n: int):
    """Peaks of ``n`` studies: the shipped studies, repeated with new ids until there are n."""
    import pandas as pd

    coords = pd.read_parquet(coords_path, columns=["study_id", "x", "y", "z"])
    ids = sorted(coords["study_id"].unique())
    chosen = [(ids[i % len(ids)], i // len(ids)) for i in range(n)]
    parts = []
    for rep in sorted({r for _, r in chosen}):
        wanted = [s for s, r in chosen if r == rep]
        part = coords[coords["study_id"].isin(wanted)].copy()
        part["study_id"] = part["study_id"] + f"#{rep}"
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def worker_reference(coords_path: str, maps_path: str, n: int) -> dict:
    from nilearn.maskers import NiftiMapsMasker, NiftiMasker
    from nimare.meta.kernel import MKDAKernel

    from niclip_ray.atlas.mask import load_brain_mask

    peaks = repeated_peaks(coords_path, n).rename(columns={"study_id": "id"})
    peaks = peaks.astype({a: float for a in "xyz"})
    masker = NiftiMasker(load_brain_mask()).fit()
    MKDAKernel(r=10, value=1).transform(peaks.head(5), masker=masker, return_type="sparse")  # numba warm-up
    start = time.perf_counter()
    images = MKDAKernel(r=10, value=1).transform(peaks, masker=masker, return_type="image")
    betas = NiftiMapsMasker(maps_path, standardize=False).fit_transform(images)
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": seconds, "setup_s": 0.0, "shape": list(betas.shape), "peak_rss_mb": peak_rss_mb()}


def worker_ours(coords_path: str, maps_path: str, n: int) -> dict:
    import numpy as np

    from niclip_ray.atlas.mask import brain_mask_grid
    from niclip_ray.atlas.projection import Projector
    from niclip_ray.features.mkda import study_voxels

    peaks = repeated_peaks(coords_path, n)
    start = time.perf_counter()
    projector = Projector(maps_path)
    grid = brain_mask_grid()
    setup = time.perf_counter() - start
    start = time.perf_counter()
    peaks = peaks.sort_values("study_id", kind="stable")
    ids = peaks["study_id"].to_numpy()
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    groups = np.split(peaks[["x", "y", "z"]].to_numpy(dtype=np.float64), bounds)
    n_out = 0
    for first in range(0, len(groups), 256):
        voxels = [study_voxels(c, grid) for c in groups[first : first + 256]]
        n_out += len(projector.project_voxels(voxels))
    seconds = time.perf_counter() - start
    shape = [n_out, projector.dim]
    return {"n": n, "seconds": seconds, "setup_s": setup, "shape": shape, "peak_rss_mb": peak_rss_mb()}


def measure(kind: str, coords_path: str, maps_path: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--coords", coords_path, "--maps", maps_path, "--n", str(n)]
    done = subprocess.run(cmd, env={**os.environ, **SINGLE_THREAD}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n-ref", type=int, nargs="*", default=[100], help="reference sizes (none: skip it)")
    parser.add_argument("--n-ours", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--worker", choices=["reference", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--coords", help=argparse.SUPPRESS)
    parser.add_argument("--maps", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        fn = worker_reference if args.worker == "reference" else worker_ours
        print(json.dumps(fn(args.coords, args.maps, args.n)))
        return

    from niclip_ray.atlas.difumo import load_atlas
    from niclip_ray.corpus import ingest

    atlas = load_atlas(args.dim, allow_standin=True)
    with tempfile.TemporaryDirectory() as tmp:
        ingest("nimare:nback_vs_flanker", tmp)
        coords_path = str(Path(tmp) / "coordinates.parquet")
        rows = [("reference", n, measure("reference", coords_path, str(atlas.maps_path), n)) for n in args.n_ref]
        rows += [("ours", n, measure("ours", coords_path, str(atlas.maps_path), n)) for n in args.n_ours]

    print(f"atlas {atlas.atlas_id}; one process, one thread each; studies from NiMARE's n-back/flanker set")
    print(f"{'approach':<10} {'N':>7} {'seconds':>9} {'studies/s/core':>15} {'setup s':>8} {'peak RSS MB':>12}")
    for kind, n, r in rows:
        rate = n / r["seconds"]
        print(f"{kind:<10} {n:>7} {r['seconds']:>9.2f} {rate:>15.1f} {r['setup_s']:>8.2f} {r['peak_rss_mb']:>12.0f}")
    refs = [r for k, _, r in rows if k == "reference"]
    if not refs:
        return
    ref = max(refs, key=lambda r: r["n"])
    ref_rate = ref["n"] / ref["seconds"]
    for kind, n, r in rows:
        if kind == "ours":
            rate = n / r["seconds"]
            with_setup = n / (r["seconds"] + r["setup_s"])
            print(
                f"ours N={n}: {rate / ref_rate:.0f}x studies/s per core vs reference N={ref['n']} "
                f"({with_setup / ref_rate:.0f}x counting the projector set-up); "
                f"peak memory {r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x the reference's"
            )


if __name__ == "__main__":
    main()
