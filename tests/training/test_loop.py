"""The pure-torch loop: batches, learning on a synthetic paired set, early stopping."""

import math

import numpy as np
import pytest
import torch

from niclip_ray.errors import InputError
from niclip_ray.training.loop import EarlyStopping, TrainConfig, epoch_batches, evaluate, fit
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
    with pytest.raises(InputError, match="multiple"):
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


def test_bad_config_names_the_option():
    with pytest.raises(InputError, match="--batch-size"):
        TrainConfig(batch_size=1)
    with pytest.raises(InputError, match="--dropout"):
        TrainConfig(dropout=1.0)
    assert math.isclose(TrainConfig().lr, 5e-4)
