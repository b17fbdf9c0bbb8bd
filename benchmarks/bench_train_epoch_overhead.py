"""Seconds per epoch of one Ray Train fold at the demo's size: Ray's controller poll against ours.

A worker's ``ray.train.report`` waits in a one-slot queue until Ray Train's controller next
polls its workers, every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s by Ray's default);
``training/ray_train.py`` sets it to ``CONTROLLER_POLL_S``. The heads train on the demo's
shapes (256 training pairs, image 512, text 384, batch 64), one worker, a checkpoint each
epoch; the plain single-process loop gives the compute alone.

Usage: python benchmarks/bench_train_epoch_overhead.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from niclip_ray.training.loop import TrainConfig, TrainTensors, build_model, make_optimizer, run_epochs
from niclip_ray.training.ray_train import CONTROLLER_POLL_S, ScalingOptions, run_fold
from niclip_ray.training.splits import FoldSplit

POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((320, 512)).astype(np.float32)
    texts = rng.standard_normal((320, 384)).astype(np.float32)
    split = FoldSplit(0, np.arange(256), np.arange(256, 288), np.arange(288, 320))
    config = TrainConfig(epochs=args.epochs, batch_size=64, patience=args.epochs, seed=0)

    torch.set_num_threads(1)
    model = build_model(384, 512, config)
    data = TrainTensors.from_arrays(images[:256], texts[:256], images[256:288], texts[256:288],
                                    device=torch.device("cpu"))
    started = time.perf_counter()
    run_epochs(model, make_optimizer(model, config), data, config, lambda end: None)
    print(f"plain loop: {(time.perf_counter() - started) / args.epochs:.3f} s per epoch")

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ref = ray.put({"images": images, "texts": texts})
    for poll in ("2.0", CONTROLLER_POLL_S):
        os.environ[POLL_ENV] = poll
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            outcome = run_fold(ref, split, config, ScalingOptions(1, cpus_per_worker=1.0, max_failures=0), Path(tmp),
                               (images[288:], texts[288:]), print_epochs=False)
            wall = time.perf_counter() - started
        trained = sum(row["train_seconds"] for row in outcome.history)
        print(f"Ray Train, controller poll {poll} s: {wall:.1f} s for {args.epochs} epochs "
              f"({wall / args.epochs:.2f} s per epoch with start-up; training itself {trained / args.epochs:.3f} s)")
    ray.shutdown()


if __name__ == "__main__":
    main()
