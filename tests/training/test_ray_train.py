"""Ray Train: 2-worker DDP equals the single-process loop, resumes its checkpoint, survives a crash."""

import json
import os
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch

from niclip_ray.errors import ConfigError
from niclip_ray.training import ray_train
from niclip_ray.training.loop import TrainConfig, build_model, make_optimizer, train_epoch
from niclip_ray.training.splits import FoldSplit
from niclip_ray.vectors import l2_normalise

pytestmark = pytest.mark.timeout(240)
cloudpickle.register_pickle_by_value(__import__(__name__))


def dataset(n=40, text_dim=12, image_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, image_dim))
    texts = images @ rng.standard_normal((image_dim, text_dim)) + 0.3 * rng.standard_normal((n, text_dim))
    return l2_normalise(images), l2_normalise(texts)


SPLIT = FoldSplit(0, np.arange(32), np.arange(32, 36), np.arange(36, 40))


def single_process_weights(images, texts, config, epochs, state=None):
    """Weights after ``epochs`` in one process, from scratch or continuing a saved ``state``."""
    model = build_model(texts.shape[1], images.shape[1], config)
    optimizer = make_optimizer(model, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    tr_i, tr_t = torch.as_tensor(images[SPLIT.train]), torch.as_tensor(texts[SPLIT.train])
    for epoch in range(0 if state is None else len(state["history"]), epochs):
        train_epoch(model, tr_i, tr_t, optimizer, config.batch_size, epoch, config.seed)
    return model.state_dict()


def checkpoint_paths(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("checkpoint_*/state.pt"))


def latest_state(run_dir: Path) -> dict:
    states = [torch.load(p, weights_only=True) for p in checkpoint_paths(run_dir)]
    return max(states, key=lambda s: len(s["history"]))


def fit(tmp_path, config, scaling, train_loop=ray_train.train_loop_per_worker):
    import ray

    images, texts = dataset()
    data_ref = ray.put({"images": images, "texts": texts})
    return ray_train.run_fold(
        data_ref, SPLIT, config, scaling, tmp_path, (images[SPLIT.test], texts[SPLIT.test]), False, train_loop
    )


def test_ddp_matches_single_process_and_resumes_from_its_checkpoint(ray_local, tmp_path):
    images, texts = dataset()
    scaling = ray_train.ScalingOptions(num_workers=2, cpus_per_worker=0.5, max_failures=0)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, weight_decay=0.1, dropout=0.0, patience=5, seed=3)
    first = fit(tmp_path, config, scaling)
    run_dir = tmp_path / "fold-0"
    expected = single_process_weights(images, texts, config, 1)
    for key, value in latest_state(run_dir)["model"].items():
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-5)
    assert [r["epoch"] for r in first.history] == [0]

    # Mark the saved checkpoint so that only a restore can explain what the rerun gives:
    # other weights (a model of another seed) and a logged epoch 0 whose train loss no run
    # computes. A rerun from scratch would train epoch 0 again from the seed-3 weights.
    [path] = checkpoint_paths(run_dir)
    saved = torch.load(path, weights_only=True)
    saved["model"] = build_model(texts.shape[1], images.shape[1], TrainConfig(seed=11, dropout=0.0)).state_dict()
    saved["history"][0]["train_loss"] = -1.0
    torch.save(saved, path)

    # same run name, more epochs: continues at epoch 1 from the saved weights and optimizer state
    config3 = TrainConfig(**{**config.to_dict(), "epochs": 3})
    second = fit(tmp_path, config3, scaling)
    assert [r["epoch"] for r in second.history] == [0, 1, 2]
    assert second.history[0] == {**first.history[0], "train_loss": -1.0}  # epoch 0 was not run again
    expected3 = single_process_weights(images, texts, config3, 3, state=saved)
    for key, value in latest_state(run_dir)["model"].items():
        torch.testing.assert_close(value, expected3[key], rtol=1e-4, atol=1e-5)
    from_scratch = single_process_weights(images, texts, config3, 3)  # what a restart would give
    assert any(not torch.allclose(value, from_scratch[key], rtol=1e-3, atol=1e-3) for key, value in expected3.items())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2] and lines[0]["train_loss"] == -1.0
    assert [json.loads(x)["epochs_kept"] for x in (run_dir / ray_train.RESUMES_FILE).read_text().splitlines()] == [1]
    # the bundle weights are the best epoch by validation loss, scored on the test rows
    assert second.best_epoch == int(np.argmin([r["val_loss"] for r in second.history]))
    assert set(second.test) == {"loss", "recall@10", "recall@100", "mix&match"}


def crash_after_two_epochs(config):
    """Run two epochs, then kill the worker process once; the retry must finish the run.

    The worker waits before it dies: Ray Train's controller takes a report (and its
    checkpoint) at its next poll, and a report still queued when the worker dies is lost.
    """
    marker = Path(config["metrics_path"]).parent / "crashed"
    if not marker.exists():
        ray_train.train_loop_per_worker({**config, "train": {**config["train"], "epochs": 2}})
        marker.touch()
        time.sleep(10 * float(ray_train.CONTROLLER_POLL_S))
        os._exit(1)
    ray_train.train_loop_per_worker(config)


def test_crashed_worker_is_retried_from_its_checkpoint(ray_local, tmp_path):
    scaling = ray_train.ScalingOptions(num_workers=1, cpus_per_worker=0.5, max_failures=1)
    config = TrainConfig(epochs=3, batch_size=8, dropout=0.0, seed=1)
    outcome = fit(tmp_path, config, scaling, train_loop=crash_after_two_epochs)
    assert (tmp_path / "fold-0" / "crashed").exists()
    assert [r["epoch"] for r in outcome.history] == [0, 1, 2]
    # the retry went on after epoch 2 (a restart from scratch writes no resume row)
    [resume] = [json.loads(x) for x in (tmp_path / "fold-0" / ray_train.RESUMES_FILE).read_text().splitlines()]
    assert (resume["fold"], resume["epochs_kept"], resume["last_epoch"]) == (0, 2, 1)


def test_a_fold_without_room_for_its_workers_fails_after_the_start_wait(ray_local, tmp_path, monkeypatch):
    """Ray Train would try to start the group forever; the fold fails once the stated wait is spent."""
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "2")
    monkeypatch.setattr(ray_train, "START_WAIT_S", 4.0)
    assert ray_train.start_attempts() == 2
    scaling = ray_train.ScalingOptions(num_workers=1, cpus_per_worker=8, max_failures=0)  # no node has 8 CPUs
    with pytest.raises(ConfigError, match=r"no room for 1 worker\(s\) of 8 CPUs each for 4 s .* resumes from"):
        fit(tmp_path, TrainConfig(epochs=1, batch_size=8), scaling)
