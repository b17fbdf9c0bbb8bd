"""Time exact image -> studies search against a brute-force loop, at 10k and 100k studies.

Synthetic, seeded latents (unit rows, the model's 512-d shared space) stand in for an index.
For each index size we time, on the same queries:

* ``brute-force loop``: per query, one cosine per study in a Python loop, then a sort
  (what a first implementation does);
* ``exact, one query``: :meth:`niclip_ray.retrieval.search.ExactSearch.top_k` per query
  (the latency a ``search image`` or a service request sees; the index is normalised once);
* ``exact, batched``: all queries in one call (blocks of 2^24 scores per matrix product);

and report queries/s, the index's memory and the peak extra memory of a search (tracemalloc),
check that all variants return the same studies, and extrapolate the one-query latency
linearly in the index size to say where exact search stops being interactive.

Usage: python benchmarks/bench_retrieval.py [--sizes 10000 100000] [--queries 512] [--loop-queries 3]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from niclip_ray.retrieval.search import ExactSearch
from niclip_ray.vectors import l2_normalise

DIM = 512
TOP_K = 20
#: One-query latency above which a service would want an approximate index.
INTERACTIVE_S = 0.05


def brute_force(query: np.ndarray, candidates: np.ndarray, k: int) -> list[int]:
    scores = [float(np.dot(query, c)) for c in candidates]
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]


def brute_force_all(queries: np.ndarray, candidates: np.ndarray) -> list[list[int]]:
    return [brute_force(q, candidates, TOP_K) for q in queries]


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def peak_extra_mb(fn, *args) -> float:
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--loop-queries", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        index = l2_normalise(rng.standard_normal((n, DIM)))
        queries = l2_normalise(rng.standard_normal((args.queries, DIM)))
        loop, loop_s = timed(brute_force_all, queries[: args.loop_queries], index)
        search = ExactSearch(index)
        single_s = float(np.median([timed(search.top_k, queries[i : i + 1], TOP_K)[1] for i in range(20)]))
        (batched, _), batch_s = timed(search.top_k, queries, TOP_K)
        assert [list(r) for r in batched[: args.loop_queries]] == loop, "exact search disagrees with the loop"
        rows.append({
            "n": n,
            "loop_qps": args.loop_queries / loop_s,
            "single_qps": 1 / single_s,
            "batched_qps": args.queries / batch_s,
            "single_ms": 1000 * single_s,
            "index_mb": index.nbytes / 2**20,
            "search_peak_mb": peak_extra_mb(search.top_k, queries, TOP_K),
        })
    print(f"exact cosine top-{TOP_K}, {DIM}-d float32 latents")
    print(f"{'studies':>9} {'loop q/s':>9} {'exact q/s':>10} {'batched q/s':>12} {'speed-up':>9} "
          f"{'1-query ms':>11} {'index MiB':>10} {'search peak MiB':>16}")
    for r in rows:
        print(f"{r['n']:>9,} {r['loop_qps']:>9.1f} {r['single_qps']:>10.0f} {r['batched_qps']:>12.0f} "
              f"{r['batched_qps'] / r['loop_qps']:>8.0f}x {r['single_ms']:>11.2f} {r['index_mb']:>10.0f} "
              f"{r['search_peak_mb']:>16.0f}")
    largest = rows[-1]
    per_study_s = largest["single_ms"] / 1000 / largest["n"]
    limit = INTERACTIVE_S / per_study_s
    print(f"\none query costs ~{per_study_s * 1e9:.1f} ns per study: exact search stays under "
          f"{INTERACTIVE_S * 1000:.0f} ms per query up to ~{limit:,.0f} studies "
          f"(index {limit * DIM * 4 / 2**20:,.0f} MiB in RAM); beyond that, or for many concurrent "
          "queries, an approximate index (FAISS, hnswlib) would be needed.")


if __name__ == "__main__":
    main()
