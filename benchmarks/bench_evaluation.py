"""Time the evaluator's permutation null against per-permutation rescoring in Python.

The reference (``per_term_eval.py``) rescores every permutation map by map with Python
sets. niclip-ray scores every (truth, list) pair once and reads permutations out of the
pair matrices. Both run on the same synthetic level (IBC-like: 1,600 maps, 400 terms,
top-10 lists) and must agree; the script prints both times and their ratio.

Usage: python benchmarks/bench_evaluation.py [--maps 1600] [--terms 400] [--permutations 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from niclip_ray.evaluation import null as nulls
from niclip_ray.evaluation.metrics import pair_scores


def synthetic_level(n_maps: int, n_terms: int, list_length: int, seed: int = 0):
    """Random top-``list_length`` lists and 1-3 true labels per map."""
    rng = np.random.default_rng(seed)
    lists = [list(rng.permutation(n_terms)[:list_length]) for _ in range(n_maps)]
    truths = [set(rng.choice(n_terms, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(n_maps)]
    ranks = np.full((n_maps, n_terms), np.inf)
    for i, ranked in enumerate(lists):
        ranks[i, ranked] = np.arange(1, list_length + 1)
    truth = np.zeros((n_maps, n_terms), dtype=bool)
    for i, true in enumerate(truths):
        truth[i, list(true)] = True
    return lists, truths, ranks, truth


def naive_null(lists, truths, k: int, perms: np.ndarray) -> np.ndarray:
    """Mean hit@k of each permutation, rescored map by map (the reference's approach)."""
    out = np.empty(len(perms))
    for p, perm in enumerate(perms):
        hits = [bool(true & set(lists[j][:k])) for true, j in zip(truths, perm)]
        out[p] = np.mean(hits)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=1600)
    parser.add_argument("--terms", type=int, default=400)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    lists, truths, ranks, truth = synthetic_level(args.maps, args.terms, list_length=10)
    perms = nulls.permutations(args.maps, args.permutations, seed=0)

    start = time.perf_counter()
    ours = nulls.summary_null(pair_scores(truth, ranks, args.k), perms)["mean_hit_at_k"]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = naive_null(lists, truths, args.k, perms)
    t_reference = time.perf_counter() - start

    np.testing.assert_allclose(ours, reference)
    print(f"{args.maps} maps, {args.terms} terms, {args.permutations} permutations, k={args.k}")
    print(f"per-permutation Python rescoring: {t_reference:.3f} s")
    print(f"pair matrices (niclip-ray):       {t_ours:.3f} s")
    print(f"speed-up: {t_reference / t_ours:.1f}x (results identical)")


if __name__ == "__main__":
    main()
