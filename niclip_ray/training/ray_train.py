"""Ray Train wrapper: one ``TorchTrainer`` (DDP) per cross-validation fold.

Each worker runs the epoch loop of :mod:`niclip_ray.training.loop`
(:func:`~niclip_ray.training.loop.run_epochs`) on a model from ``prepare_model``. Every
global batch is cut into equal slices, one per worker; the features are all-gathered with
gradients, so the loss sees the whole batch (all negatives) and a DDP epoch equals the
single-process epoch. Backend: gloo on CPU, NCCL on GPU. :func:`run_folds` schedules every
fold's trainer, several at a time when asked; the features go into the object store once
and all folds' workers share them.

Run layout under ``storage_path``::

    fold-K/                      RunConfig(name="fold-K", storage_path=...)
      checkpoint_<ts>/state.pt   model + optimizer + epoch log, every epoch (rank 0)
      checkpoint_manager_snapshot.json
      metrics.jsonl              one line per epoch (rank 0)
      resumes.jsonl              one line per start from a checkpoint (rank 0)

Ray keeps the best checkpoint by validation loss plus the latest one. Rerunning with the
same storage path resumes each fold from its latest checkpoint (Ray Train V2 restores
from the same ``RunConfig(name, storage_path)``); ``FailureConfig(max_failures)`` restarts
crashed workers from it. Each such start appends a line to ``resumes.jsonl``, which the
driver follows to say that the fold went on from the checkpoint rather than starting over.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from niclip_ray.atomic import write_text
from niclip_ray.errors import ConfigError, ParameterError
from niclip_ray.model import CLIP
from niclip_ray.model.checkpoint import read_torch_file
from niclip_ray.runtime.session import TRAIN_LOG_LEVEL
from niclip_ray.training.loop import (
    EpochEnd,
    TrainConfig,
    TrainTensors,
    build_model,
    evaluate,
    make_optimizer,
    run_epochs,
    unwrap,
)
from niclip_ray.training.splits import FoldSplit

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
RESUMES_FILE = "resumes.jsonl"
#: Seconds between Ray Train's controller polls of its workers (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``,
#: set for the controller unless the user set it). A worker's epoch report waits in a
#: one-slot queue until the next poll, every 2 s by Ray's default: each epoch then took at
#: least 2 s, where the demo's heads train an epoch in 0.08 s.
CONTROLLER_POLL_S = "0.25"
#: Seconds a fold waits, in all, for room for its workers (``NICLIP_TRAIN_START_WAIT_S``):
#: at the start, and after a failure such as a lost node. Ray Train tries to start the
#: group every ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (60 s) and, by default, forever.
START_WAIT_S = float(os.environ.get("NICLIP_TRAIN_START_WAIT_S", 900))


@dataclass(frozen=True)
class ScalingOptions:
    """How many Ray Train workers each fold uses.

    Attributes
    ----------
    num_workers : int
        DDP workers per fold.
    use_gpu : bool
        One GPU per worker, NCCL backend.
    cpus_per_worker : float
        CPUs reserved per worker (fractional on small machines, see ``docs/runtime.md``).
    max_failures : int
        Worker-group restarts from the last checkpoint before a fold fails.
    """

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 1


@dataclass
class FoldOutcome:
    """Result of one fold: the best weights by validation loss and their test scores."""

    fold: int
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    history: list[dict]
    test: dict[str, float]
    run_dir: Path
    extra: dict = field(default_factory=dict)


def _gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over all workers; gradients flow back to each worker's slice."""
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def _load_state(checkpoint) -> dict:
    with checkpoint.as_directory() as directory:
        return read_torch_file(Path(directory) / STATE_FILE)


def _restore(checkpoint, model: CLIP, optimizer: torch.optim.Optimizer) -> list[dict]:
    """Load a checkpoint's weights and optimizer state; return its epoch log ([] without one)."""
    if checkpoint is None:
        return []
    state = _load_state(checkpoint)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["history"]


def _write_history(path: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl whole from the log so far (drops epochs lost in a crash)."""
    write_text(path, "".join(json.dumps(row) + "\n" for row in history))


def _record_resume(path: Path, fold: int, history: list[dict]) -> None:
    """Append to ``resumes.jsonl`` that fold ``fold`` starts again after the epochs in ``history``."""
    rows = path.read_text() if path.exists() else ""
    row = {"fold": fold, "epochs_kept": len(history), "last_epoch": history[-1]["epoch"], "time": time.time()}
    write_text(path, rows + json.dumps(row) + "\n")


def _epoch_line(fold: int, row: dict) -> str:
    return (
        f"fold {fold} | epoch {row['epoch'] + 1:3d} | train {row['train_loss']:.4f} | val {row['val_loss']:.4f} | "
        f"val R@10 {row['val_recall@10']:.3f} | val mix&match {row['val_mix&match']:.3f} | "
        f"scale {row['logit_scale']:.2f}"
    )


def train_loop_per_worker(config: dict) -> None:
    """The per-worker function: :func:`run_epochs` on a DDP model, checkpointed each epoch.

    Resumes from ``ray.train.get_checkpoint()`` (weights, optimizer state, epoch log and so
    the next epoch and the early stopping state). After each epoch rank 0 appends the row to
    metrics.jsonl and saves a checkpoint; every rank calls ``ray.train.report``.

    ``config`` keys: ``train`` (TrainConfig as a dict), ``data`` (ObjectRef of a dict with
    ``images`` and ``texts`` arrays), ``train_idx``, ``val_idx``, ``fold``, ``metrics_path``
    and ``print_epochs``.
    """
    import ray
    import ray.train
    import ray.train.torch

    # Ray Train logs each worker's per-epoch report through the root logger (at INFO)
    logging.getLogger().setLevel(TRAIN_LOG_LEVEL)
    cfg = TrainConfig(**config["train"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    arrays = ray.get(config["data"])
    data = TrainTensors.from_arrays(
        *(arrays[side][config[part]] for part in ("train_idx", "val_idx") for side in ("images", "texts")),
        device=ray.train.torch.get_device(),
    )
    model = ray.train.torch.prepare_model(build_model(data.train_texts.shape[1], data.train_images.shape[1], cfg))
    optimizer = make_optimizer(model, cfg)
    history = _restore(ray.train.get_checkpoint(), unwrap(model), optimizer)
    metrics_path = Path(config["metrics_path"])
    if rank == 0:
        _write_history(metrics_path, history)
        if history:
            _record_resume(metrics_path.with_name(RESUMES_FILE), config["fold"], history)

    def checkpoint_and_report(end: EpochEnd) -> None:
        row = {**end.record, "train_seconds": end.seconds, "fold": config["fold"]}
        history.append(row)
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                state = {"model": end.model.state_dict(), "optimizer": optimizer.state_dict(), "history": history}
                torch.save(state, Path(tmp) / STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(tmp)
                _write_history(metrics_path, history)
                if config["print_epochs"]:  # not print(): Ray Train's patched print logs it twice
                    sys.stdout.write(_epoch_line(config["fold"], row) + "\n")
                    sys.stdout.flush()
            ray.train.report({"epoch": row["epoch"], "val_loss": row["val_loss"]}, checkpoint=saved)

    gather = _gather_with_grad if world > 1 else None
    run_epochs(model, optimizer, data, cfg, checkpoint_and_report, done=list(history), rank=rank,
               world_size=world, gather=gather)


def start_attempts() -> int:
    """Worker-group starts a fold may have time out: as many as fit in ``START_WAIT_S`` (at least one)."""
    timeout_s = float(os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", 60))
    return max(1, math.ceil(START_WAIT_S / timeout_s))


def _no_room(fold: int, scaling: ScalingOptions, error: Exception) -> ConfigError | None:
    """The error to raise when a fold's workers found no room within the start wait, else None."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
    from ray.train.v2.api.exceptions import ControllerError

    if not (isinstance(error, ControllerError)
            and isinstance(error.controller_failure, WorkerGroupStartupTimeoutError)):
        return None
    gpu = " and 1 GPU" if scaling.use_gpu else ""
    return ConfigError(
        f"fold {fold}: the cluster had no room for {scaling.num_workers} worker(s) of {scaling.cpus_per_worker:g} "
        f"CPUs{gpu} each for {START_WAIT_S:g} s (NICLIP_TRAIN_START_WAIT_S), at the start or after a failure such "
        f"as a lost node; rerun the same command once it has room: it resumes from the last checkpoint")


def run_fold(
    data_ref,
    split: FoldSplit,
    config: TrainConfig,
    scaling: ScalingOptions,
    storage_path: Path,
    test_arrays: tuple[np.ndarray, np.ndarray],
    print_epochs: bool = True,
    train_loop: Callable[[dict], None] = train_loop_per_worker,
) -> FoldOutcome:
    """Fit one fold with a ``TorchTrainer``, resuming its run directory if present.

    Parameters
    ----------
    data_ref : ray.ObjectRef
        ``{"images": (n, d), "texts": (n, D)}`` for all rows, put once for all folds.
    split : FoldSplit
    config : TrainConfig
    scaling : ScalingOptions
    storage_path : Path
        Parent of the fold's run directory ``fold-K``.
    test_arrays : (images, texts)
        The fold's test rows, scored once with the best weights.
    print_epochs : bool
        Rank 0 prints one line per epoch.
    train_loop : callable
        The per-worker function (tests wrap it to inject a crash).
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    name = f"fold-{split.fold}"
    run_dir = Path(storage_path) / name
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", CONTROLLER_POLL_S)  # the trainer passes it on
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "train": config.to_dict(),
            "data": data_ref,
            "train_idx": split.train,
            "val_idx": split.val,
            "fold": split.fold,
            "metrics_path": str(run_dir / METRICS_FILE),
            "print_epochs": print_epochs,
        },
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
            failure_config=FailureConfig(max_failures=scaling.max_failures,
                                         controller_failure_limit=start_attempts() - 1),
            logging_config=LoggingConfig(log_level=TRAIN_LOG_LEVEL),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        no_room = _no_room(split.fold, scaling, exc)
        if no_room is None:
            raise
        raise no_room from exc
    if result.checkpoint is None:
        raise ConfigError(f"fold {split.fold} finished without a checkpoint in {run_dir}")
    history = _load_state(result.checkpoint)["history"]
    kept = result.best_checkpoints or []
    if not kept:
        raise ConfigError(f"fold {split.fold}: Ray kept no scored checkpoint in {run_dir}")
    best_checkpoint, best_metrics = min(kept, key=lambda item: (item[1]["val_loss"], item[1]["epoch"]))
    best_epoch = int(best_metrics["epoch"])
    best_state = _load_state(best_checkpoint)["model"]
    model = CLIP.from_state_dict(best_state)
    test_i, test_t = (torch.as_tensor(a, dtype=torch.float32) for a in test_arrays)
    test = evaluate(model, test_i, test_t, config.batch_size)
    return FoldOutcome(split.fold, best_epoch, best_state, history, test, run_dir)


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

    from niclip_ray.runtime.session import check_fits_a_node, cluster_cpus, cluster_gpus

    if config.batch_size % scaling.num_workers:
        raise ParameterError(
            "batch_size", f"must be a multiple of the number of workers ({scaling.num_workers}), got {config.batch_size}"
        )
    check_fits_a_node("a train worker", scaling.cpus_per_worker)
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
