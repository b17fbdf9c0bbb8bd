"""Fold concurrency: every fold's ``TorchTrainer`` run, several at a time when asked.

The features go into the object store once and all folds' workers share them; each fold
is one :func:`niclip_ray.training.ray_train.run_fold`, started from a thread so that up to
``max_concurrent_folds`` trainers share the cluster.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from niclip_ray.errors import ConfigError, ParameterError
from niclip_ray.training.loop import TrainConfig
from niclip_ray.training.ray_train import FoldOutcome, ScalingOptions, run_fold
from niclip_ray.training.splits import FoldSplit


def worker_cpu_share(num_workers: int, max_concurrent_folds: int, total_cpus: float, wanted: float = 1.0) -> float:
    """CPUs per worker so that concurrent folds fit and half a CPU stays free (``docs/runtime.md``, "Small machines")."""
    budget = max(total_cpus - 0.5, 0.25)
    return round(min(wanted, budget / max(1, num_workers * max_concurrent_folds)), 3)


def run_folds(
    images: np.ndarray,
    texts: np.ndarray,
    splits: list[FoldSplit],
    config: TrainConfig,
    scaling: ScalingOptions,
    storage_path: Path,
    max_concurrent_folds: int = 1,
    print_epochs: bool = True,
) -> list[FoldOutcome]:
    """Fit every fold, at most ``max_concurrent_folds`` ``TorchTrainer`` runs at a time.

    Raises
    ------
    ParameterError
        When ``batch_size`` does not split evenly across the workers, or ``use_gpu`` asks
        for more GPUs than the cluster has.
    ConfigError
        When the cluster cannot hold one fold's workers (Ray would wait forever).
    """
    import ray

    from niclip_ray.runtime.session import cluster_cpus, cluster_gpus

    if config.batch_size % scaling.num_workers:
        raise ParameterError(
            "batch_size", f"must be a multiple of the number of workers ({scaling.num_workers}), got {config.batch_size}"
        )
    need_cpus = scaling.num_workers * scaling.cpus_per_worker
    if need_cpus > cluster_cpus():
        raise ConfigError(f"{scaling.num_workers} workers x {scaling.cpus_per_worker} CPUs exceed the cluster's {cluster_cpus():g} CPUs")
    if scaling.use_gpu and scaling.num_workers > cluster_gpus():
        raise ParameterError("use_gpu", f"needs one GPU per worker ({scaling.num_workers}); the cluster has {cluster_gpus():g}")
    data_ref = ray.put({"images": np.ascontiguousarray(images), "texts": np.ascontiguousarray(texts)})

    def one(split: FoldSplit) -> FoldOutcome:
        test = (images[split.test], texts[split.test])
        return run_fold(data_ref, split, config, scaling, storage_path, test, print_epochs)

    workers = max(1, min(max_concurrent_folds, len(splits)))
    if workers == 1:
        return [one(split) for split in splits]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fold") as pool:
        return list(pool.map(one, splits))
