"""The pure-torch loop: batches, learning on a synthetic paired set, early stopping, resume."""

import copy
import math

import numpy as np
import pytest
import torch

from niclip_ray.errors import ParameterError
from niclip_ray.training.loop import (
    EarlyStopping,
    TrainConfig,
    TrainTensors,
    build_model,
    epoch_batches,
    evaluate,
    fit,
    make_optimizer,
    run_epochs,
)
from niclip_ray.vectors import l2_normalise


def paired(n, text_dim=12, image_dim=8, seed=0, noise=0.3):
    """Texts are a fixed linear map of images plus noise: a learnable pairing."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, image_dim))
    mix = rng.standard_normal((image_dim, text_dim))
    texts = images @ mix + noise * rng.standard_normal((n, text_dim))
    return l2_normalise(images), l2_normalise(texts)


def test_epoch_batches_cover_rows_once_and_split_evenly():
    batches = epoch_batches(50, 16, epoch=0, seed=0)
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(50, 16, epoch=1, seed=0)))
    # two workers: each batch trimmed to an even size; a lone trailing row is dropped
    assert [len(b) for b in epoch_batches(49, 16, epoch=0, seed=0, world_size=2)] == [16, 16, 16]
    with pytest.raises(ParameterError, match="^batch_size must be a multiple of world_size"):
        epoch_batches(50, 15, 0, 0, world_size=2)


def test_fit_reduces_validation_loss_and_improves_retrieval():
    images, texts = paired(240)
    config = TrainConfig(epochs=15, batch_size=32, lr=3e-3, weight_decay=0.0, dropout=0.0, patience=15, seed=0)
    result = fit(images[:200], texts[:200], images[200:], texts[200:], config)
    first, best = result.history[0], min(result.history, key=lambda r: r["val_loss"])
    assert best["val_loss"] < 0.7 * first["val_loss"]
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert best["val_mix&match"] > 0.9
    # the kept weights are the best epoch's, not the last (no aliasing of live weights)
    from niclip_ray.model import CLIP

    model = CLIP.from_state_dict(result.best_state)
    again = evaluate(model, torch.as_tensor(images[200:]), torch.as_tensor(texts[200:]), 32)
    assert again["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert result.best_epoch == best["epoch"]


def test_fit_is_deterministic_for_a_seed():
    images, texts = paired(60, seed=1)
    config = TrainConfig(epochs=2, batch_size=16, dropout=0.5, seed=4)
    a = fit(images[:48], texts[:48], images[48:], texts[48:], config)
    b = fit(images[:48], texts[:48], images[48:], texts[48:], config)
    assert a.history == b.history


def test_early_stopping_counts_epochs_without_improvement():
    stop = EarlyStopping(patience=2)
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.1]):
        stop.update(epoch, loss)
    assert (stop.best_epoch, stop.bad_epochs, stop.should_stop) == (1, 2, True)
    replayed = EarlyStopping.replay(2, [{"epoch": e, "val_loss": v} for e, v in enumerate([3.0, 2.0, 2.5])])
    assert (replayed.best_loss, replayed.bad_epochs, replayed.should_stop) == (2.0, 1, False)


def test_fit_stops_early_on_validation_loss():
    images, texts = paired(60, seed=2)
    # validation pairs are unrelated to training pairs: val loss cannot keep improving
    rng = np.random.default_rng(9)
    val_texts = l2_normalise(rng.standard_normal((20, 12)))
    config = TrainConfig(epochs=40, batch_size=20, lr=1e-2, dropout=0.0, patience=3, seed=0)
    result = fit(images[:40], texts[:40], images[40:], val_texts, config)
    assert len(result.history) < 40
    assert len(result.history) == result.best_epoch + 1 + 3


def run_for(epochs, model, optimizer, data, config, done=()):
    """The EpochEnd of every epoch run_epochs runs, up to ``epochs``."""
    ends = []
    run_epochs(model, optimizer, data, TrainConfig(**{**config.to_dict(), "epochs": epochs}), ends.append, done=done)
    return ends


def test_run_epochs_resumed_from_a_saved_state_equals_an_uninterrupted_run():
    images, texts = paired(60, seed=3)
    data = TrainTensors.from_arrays(images[:48], texts[:48], images[48:], texts[48:])
    config = TrainConfig(epochs=4, batch_size=16, lr=1e-2, dropout=0.3, patience=4, seed=2)
    whole_model = build_model(12, 8, config)
    whole = run_for(4, whole_model, make_optimizer(whole_model, config), data, config)

    model = build_model(12, 8, config)
    optimizer = make_optimizer(model, config)
    before = run_for(2, model, optimizer, data, config)
    saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    # a differently initialised model: the resumed run can only match by loading the saved state
    resumed = build_model(12, 8, TrainConfig(**{**config.to_dict(), "seed": 99}))
    resumed_optimizer = make_optimizer(resumed, config)
    resumed.load_state_dict(saved[0])
    resumed_optimizer.load_state_dict(saved[1])
    after = run_for(4, resumed, resumed_optimizer, data, config, done=[end.record for end in before])

    assert [end.record["epoch"] for end in after] == [2, 3]
    assert [end.record for end in before + after] == [end.record for end in whole]
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, whole_model.state_dict()[key], rtol=0, atol=0)


def test_run_epochs_resumes_the_early_stopping_state_of_the_done_epochs():
    images, texts = paired(40, seed=4)
    data = TrainTensors.from_arrays(images[:32], texts[:32], images[32:], texts[32:])
    config = TrainConfig(epochs=10, batch_size=16, patience=2, seed=0)
    model = build_model(12, 8, config)
    done = [{"epoch": 0, "val_loss": -1.0}]  # a loss no epoch can beat (InfoNCE is >= 0)
    ends = run_for(10, model, make_optimizer(model, config), data, config, done=done)
    assert [(end.record["epoch"], end.improved) for end in ends] == [(1, False), (2, False)]
    stopped = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 2.0, 3.0])]
    assert run_for(10, model, make_optimizer(model, config), data, config, done=stopped) == []


def test_bad_config_names_the_parameter():
    with pytest.raises(ParameterError, match=r"^batch_size must be at least 2, got 1$") as error:
        TrainConfig(batch_size=1)
    assert error.value.param == "batch_size"
    with pytest.raises(ParameterError, match=r"^dropout must be in \[0, 1\), got 1.0$"):
        TrainConfig(dropout=1.0)
    assert math.isclose(TrainConfig().lr, 5e-4)
