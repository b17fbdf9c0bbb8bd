"""Time vectorised retrieval metrics against the reference's O(n^2) Python loops.

The reference scores every fit with ``recall_n`` (an argsort per row of the similarity
matrix, in a Python loop) and ``mix_match`` (a double Python loop over the matrix), on the
test fold (~1,000 rows) and on the ~21.8k-row training set. niclip-ray compares each row
with its diagonal entry in torch, chunked over rows. Both run on the same features and must
agree; the script prints both times and their ratio per size.

Usage: python benchmarks/bench_training_metrics.py [--sizes 500 1000 2000] [--dim 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from niclip_ray.training.metrics import retrieval_metrics


def loop_mix_match(sim: np.ndarray) -> float:
    """Double loop over the matrix, as the reference's ``mix_match``."""
    scores = []
    for i in range(len(sim)):
        wins = 0
        for j in range(len(sim[i])):
            if j != i and sim[i][i] > sim[i][j]:
                wins += 1
        scores.append(wins / (len(sim[i]) - 1))
    return float(np.mean(scores))


def loop_recall(sim: np.ndarray, n_first: int) -> float:
    """One argsort per row against an identity ground truth, as the reference's ``recall_n``."""
    truth = np.eye(len(sim))
    out = np.zeros(len(sim))
    for i in range(len(sim)):
        targets = np.where(truth[i] >= 0.95)[0]
        top = np.argsort(sim[i])[::-1][:n_first]
        out[i] = len(np.intersect1d(targets, top)) / len(targets)
    return float(out.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'n':>6} {'reference loops (s)':>20} {'vectorised (s)':>15} {'ratio':>8}")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        img = rng.standard_normal((n, args.dim)).astype(np.float32)
        txt = img + rng.standard_normal((n, args.dim)).astype(np.float32) * 2
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
        start = time.perf_counter()
        sim = img @ txt.T
        slow = {"recall@10": loop_recall(sim, 10), "recall@100": loop_recall(sim, 100), "mix&match": loop_mix_match(sim)}
        t_slow = time.perf_counter() - start
        start = time.perf_counter()
        fast = retrieval_metrics(torch.from_numpy(img), torch.from_numpy(txt))
        t_fast = time.perf_counter() - start
        for key in slow:
            assert abs(slow[key] - fast[key]) < 1e-9, (key, slow[key], fast[key])
        print(f"{n:>6} {t_slow:>20.3f} {t_fast:>15.4f} {t_slow / t_fast:>7.0f}x")


if __name__ == "__main__":
    main()
