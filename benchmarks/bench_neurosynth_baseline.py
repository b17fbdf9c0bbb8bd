"""Neurosynth baseline fit: our sparse engine vs NiMARE's CorrelationDecoder, and the sparse engine at full scale.

1. Same inputs: the 320 studies of NiMARE's shipped n-back/flanker set and 20 task-like
   terms found in their abstracts. ``NeurosynthBaseline(engine="nimare")`` (one MKDAChi2
   fit per term, the reference) and ``NeurosynthBaseline()`` (the sparse engine) are each
   fitted in a process of their own; we report the fit times, their ratio, peak memory and
   the largest absolute difference between the two engines' term maps.
2. Full scale, sparse engine only: synthetic studies, each the peaks of a random shipped
   study jittered by 4 mm (so sphere counts and overlaps are those of real studies), and
   terms mentioned by a log-uniform number of studies (3 to 20% of them). Stages: the MKDA
   activation matrix (``study_voxels`` per study), every term's association map
   (``association_z``), the map moments the decoder needs, and decoding one map.

Each measurement runs in its own single-threaded process (BLAS/OpenMP/numba threads = 1),
so times are per core and peak memory is that process's peak RSS.

Usage: python benchmarks/bench_neurosynth_baseline.py [--terms 20] [--full 15000x850 ...]
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
#: Task-like words of the n-back/flanker abstracts (each in 4 to 172 of the 320).
TERMS = ["working memory", "n-back", "flanker", "attention", "conflict", "error", "memory", "interference",
         "stroop", "load", "cognitive control", "inhibition", "reaction time", "executive", "prefrontal cortex",
         "response", "accuracy", "performance", "task switching", "anterior cingulate", "monitoring", "emotional",
         "reward", "schizophrenia", "aging"]


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_fit(engine: str, corpus_dir: str, n_terms: int, out: str) -> dict:
    import nimare.decode.continuous  # noqa: F401  imports and the template are not part of the fit
    import numpy as np

    from niclip_ray.baselines import NeurosynthBaseline
    from niclip_ray.baselines.base import template_mask
    from niclip_ray.corpus import load_corpus

    template_mask()
    corpus = load_corpus(corpus_dir)
    ids = corpus.studies["study_id"].tolist()
    baseline = NeurosynthBaseline(engine=engine)
    start = time.perf_counter()
    baseline.fit(corpus, ids, TERMS[:n_terms])
    seconds = time.perf_counter() - start
    np.savez(out, maps=baseline.term_maps_, terms=np.array(baseline.terms_))
    return {"seconds": seconds, "n_studies": len(ids), "n_terms": len(baseline.terms_), "peak_rss_mb": peak_rss_mb()}


def save_shipped_peaks(corpus_dir: str, out: str) -> None:
    """The shipped studies' peaks as plain arrays, so the full-scale worker needs no pandas."""
    import numpy as np
    import pandas as pd

    coords = pd.read_parquet(Path(corpus_dir) / "coordinates.parquet", columns=["study_id", "x", "y", "z"])
    coords = coords.sort_values("study_id", kind="stable")
    ids = coords["study_id"].to_numpy()
    np.savez(out, xyz=coords[["x", "y", "z"]].to_numpy(dtype=np.float64), starts=np.flatnonzero(ids[1:] != ids[:-1]) + 1)


def synthetic_inputs(peaks_file: str, n_studies: int, n_terms: int, seed: int = 0):
    """Jittered copies of shipped studies' peaks, and log-uniform term mentions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with np.load(peaks_file) as shipped:
        studies = np.split(shipped["xyz"], shipped["starts"])
    peaks = [studies[i] + rng.normal(0.0, 4.0, studies[i].shape) for i in rng.integers(len(studies), size=n_studies)]
    mentions = np.exp(rng.uniform(np.log(3), np.log(0.2 * n_studies), n_terms)).astype(int)
    labels = np.zeros((n_terms, n_studies), dtype=bool)
    for term, k in enumerate(mentions):
        labels[term, rng.choice(n_studies, size=k, replace=False)] = True
    return peaks, labels


def worker_full(peaks_file: str, n_studies: int, n_terms: int) -> dict:
    import numpy as np

    from niclip_ray.atlas.mask import brain_mask_grid
    from niclip_ray.baselines.association import activation_matrix, association_z, correlate, map_moments
    from niclip_ray.features.mkda import study_voxels

    peaks, labels = synthetic_inputs(peaks_file, n_studies, n_terms)
    grid = brain_mask_grid()
    inputs_mb = peak_rss_mb()
    times = {}
    start = time.perf_counter()
    activations = activation_matrix((study_voxels(p, grid) for p in peaks), grid.n_voxels)
    times["activations"] = time.perf_counter() - start
    start = time.perf_counter()
    maps = association_z(activations, labels)
    times["association"] = time.perf_counter() - start
    start = time.perf_counter()
    moments = map_moments(maps)
    times["moments"] = time.perf_counter() - start
    start = time.perf_counter()
    correlate(np.asarray(activations[[0]].todense(), dtype=np.float64).ravel(), maps, moments)
    times["decode_one_map"] = time.perf_counter() - start
    return {
        "n_studies": n_studies, "n_terms": n_terms, "times": times, "peak_rss_mb": peak_rss_mb(),
        "inputs_rss_mb": inputs_mb, "nnz": int(activations.nnz), "mean_peaks": float(np.mean([len(p) for p in peaks])),
        "mean_mentions": float(labels.sum(axis=1).mean()), "maps_mb": maps.nbytes / 2**20,
        "activations_mb": sum(a.nbytes for a in (activations.data, activations.indices, activations.indptr)) / 2**20,
    }


def measure(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(cmd, env={**os.environ, **SINGLE_THREAD}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_engines(corpus_dir: str, n_terms: int, tmp: str) -> None:
    import numpy as np

    runs = {}
    for engine in ("nimare", "sparse"):
        out = str(Path(tmp) / f"{engine}.npz")
        runs[engine] = (measure("fit", engine, corpus_dir, str(n_terms), out), np.load(out))
    (ref, ref_maps), (ours, our_maps) = runs["nimare"], runs["sparse"]
    same_terms = ref_maps["terms"].tolist() == our_maps["terms"].tolist()
    difference = float(np.abs(ref_maps["maps"] - our_maps["maps"]).max())
    print(f"same inputs: {ref['n_studies']} studies, {ref['n_terms']} fitted terms (of {n_terms}); one thread each")
    print(f"{'engine':<8} {'fit s':>8} {'peak RSS MB':>12}")
    for name, (r, _) in runs.items():
        print(f"{name:<8} {r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f}")
    print(f"sparse engine: {ref['seconds'] / ours['seconds']:.0f}x faster than NiMARE's CorrelationDecoder; "
          f"peak memory {ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x; same term list: {same_terms}; "
          f"max |z difference| {difference:.3g}")


def full_scale(corpus_dir: str, sizes: list[str], tmp: str) -> None:
    peaks_file = str(Path(tmp) / "peaks.npz")
    save_shipped_peaks(corpus_dir, peaks_file)
    for size in sizes:
        n_studies, n_terms = (int(part) for part in size.lower().split("x"))
        r = measure("full", peaks_file, str(n_studies), str(n_terms))
        t = r["times"]
        fit = t["activations"] + t["association"] + t["moments"]
        print(f"full scale, sparse engine: {n_studies} synthetic studies ({r['mean_peaks']:.0f} peaks, "
              f"{r['nnz'] / n_studies:.0f} voxels each on average) x {n_terms} terms "
              f"({r['mean_mentions']:.0f} mentioning studies per term on average)")
        print(f"  activation matrix {t['activations']:.1f} s, association maps {t['association']:.1f} s, "
              f"moments {t['moments']:.1f} s: fit {fit:.1f} s; decode one map {t['decode_one_map']:.2f} s")
        print(f"  peak RSS {r['peak_rss_mb']:.0f} MB ({r['inputs_rss_mb']:.0f} MB before the fit: imports, mask, "
              f"peaks; the activation matrix is {r['activations_mb']:.0f} MB, the term maps {r['maps_mb']:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terms", type=int, default=20, help="terms of the engine comparison (at most 25)")
    parser.add_argument("--full", nargs="*", default=["15000x850"], help="STUDIESxTERMS of the full-scale runs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "fit":
            result = worker_fit(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            result = worker_full(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return

    from niclip_ray.corpus import ingest

    with tempfile.TemporaryDirectory() as tmp:
        ingest("nimare:nback_vs_flanker", tmp)
        compare_engines(tmp, args.terms, tmp)
        full_scale(tmp, args.full, tmp)


if __name__ == "__main__":
    main()
