"""Overhead of Ray Train, and k-fold wall time with folds in parallel against serially.

1. Samples/s of a training epoch: the plain single-process loop against the Ray Train path
   (``TorchTrainer``, 1 and 2 DDP workers) at the same global batch size on the same
   synthetic data with the reference's dimensions (text 4096, image 512). The Ray figure is
   the epoch time measured inside rank 0; the fit's wall time (worker start-up, checkpoints)
   is printed too.
2. Wall time of a k-fold run with ``max_concurrent_folds=k`` against 1.

Usage: python benchmarks/bench_training_throughput.py [--n 4096] [--epochs 3] [--folds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from niclip_ray.training.loop import TrainConfig, build_model, make_optimizer, train_epoch
from niclip_ray.training.ray_train import ScalingOptions, run_fold, run_folds
from niclip_ray.training.splits import FoldSplit, kfold_splits
from niclip_ray.vectors import l2_normalise


def synthetic(n: int, text_dim: int, image_dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, image_dim)).astype(np.float32)
    texts = rng.standard_normal((n, text_dim)).astype(np.float32)
    return l2_normalise(images), l2_normalise(texts)


def plain_samples_per_s(images, texts, config: TrainConfig, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    model = build_model(texts.shape[1], images.shape[1], config)
    optimizer = make_optimizer(model, config)
    x, y = torch.from_numpy(images), torch.from_numpy(texts)
    train_epoch(model, x, y, optimizer, config.batch_size, 0, config.seed)  # warm-up
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_epoch(model, x, y, optimizer, config.batch_size, epoch, config.seed)
    return epochs * len(images) / (time.perf_counter() - start)


def ray_samples_per_s(images, texts, config, workers: int, cpus: float, out: Path) -> tuple[float, float]:
    import ray

    n = len(images)
    split = FoldSplit(0, np.arange(n), np.arange(n, n + 256), np.arange(n + 256, n + 512))
    extra_i, extra_t = synthetic(512, texts.shape[1], images.shape[1], seed=1)
    all_i, all_t = np.vstack([images, extra_i]), np.vstack([texts, extra_t])
    ref = ray.put({"images": all_i, "texts": all_t})
    start = time.perf_counter()
    outcome = run_fold(ref, split, config, ScalingOptions(workers, cpus_per_worker=cpus, max_failures=0), out,
                       (all_i[split.test], all_t[split.test]), print_epochs=False)
    wall = time.perf_counter() - start
    seconds = [row["train_seconds"] for row in outcome.history[1:]]  # skip the first (warm-up) epoch
    return n / float(np.mean(seconds)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--text-dim", type=int, default=4096)
    parser.add_argument("--image-dim", type=int, default=512)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    images, texts = synthetic(args.n, args.text_dim, args.image_dim)
    config = TrainConfig(epochs=args.epochs, batch_size=128, patience=args.epochs)
    results = {"cpus": os.cpu_count(), "n": args.n, "batch_size": 128}
    for threads in (1, 2):
        results[f"plain_{threads}thread_samples_per_s"] = plain_samples_per_s(images, texts, config, 2, threads)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=512 * 2**20)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers, cpus in ((1, 1.0), (2, 0.75)):
                rate, wall = ray_samples_per_s(images, texts, config, workers, cpus, Path(tmp) / f"w{workers}")
                results[f"ray_{workers}worker_samples_per_s"] = rate
                results[f"ray_{workers}worker_fit_wall_s"] = wall
            splits = kfold_splits(args.n, args.folds, seed=0)
            fold_config = TrainConfig(epochs=2, batch_size=128, patience=2)
            for concurrent in (1, args.folds):
                start = time.perf_counter()
                run_folds(images, texts, splits, fold_config, ScalingOptions(1, cpus_per_worker=0.5, max_failures=0),
                          Path(tmp) / f"kfold{concurrent}", max_concurrent_folds=concurrent, print_epochs=False)
                results[f"kfold_{args.folds}folds_concurrent{concurrent}_wall_s"] = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
