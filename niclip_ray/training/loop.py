"""The training loop in plain torch: batches, one epoch, evaluation, early stopping.

Nothing here imports Ray. :mod:`niclip_ray.training.ray_train` runs the same functions on
each Ray Train worker, passing its rank, the world size and an autograd-aware all-gather,
so that a DDP epoch computes the loss over the *global* batch (all negatives) and gives the
same weights as :func:`fit` in one process.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from niclip_ray.errors import InputError
from niclip_ray.model import CLIP, clip_loss
from niclip_ray.training.metrics import retrieval_metrics

Gather = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters (defaults: the reference's, §1.7 of the method notes).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Global batch size (split across workers under DDP).
    lr, weight_decay : float
        AdamW settings; weight decay applies to every parameter, as in the reference.
    dropout : float
    patience : int
        Epochs without a lower validation loss before stopping.
    seed : int
        Seeds initialisation, shuffling and dropout.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    dropout: float = 0.5
    patience: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "dropout": 0 <= self.dropout < 1,
            "patience": self.patience >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"invalid --{name.replace('_', '-')}: {getattr(self, name)}")

    def to_dict(self) -> dict:
        """Plain dict, for JSON."""
        return asdict(self)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


def build_model(text_dim: int, image_dim: int, config: TrainConfig) -> CLIP:
    """A freshly initialised CLIP, identical for a given seed."""
    torch.manual_seed(_seed(config.seed, 1))
    return CLIP(text_dim=text_dim, image_dim=image_dim, dropout=config.dropout)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over all parameters (the reference decays logit_scale and LayerNorm too)."""
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, world_size: int = 1) -> list[np.ndarray]:
    """Global batches of one epoch: a seeded shuffle cut into ``batch_size`` chunks.

    Each batch is trimmed to a multiple of ``world_size`` so every worker gets an equal
    slice; a batch left with fewer than two rows (no negatives) is dropped.
    """
    if batch_size % world_size:
        raise InputError(f"--batch-size {batch_size} must be a multiple of the {world_size} workers")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    batches = []
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        batch = batch[: len(batch) - len(batch) % world_size]
        if len(batch) >= max(2, world_size):
            batches.append(batch)
    return batches


def train_epoch(
    model: torch.nn.Module,
    images: torch.Tensor,
    texts: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    epoch: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather | None = None,
) -> float:
    """One pass over the training rows; returns the mean batch loss.

    Parameters
    ----------
    model : CLIP, or a DDP wrapper of it
    images, texts : (n, dim) float32 tensors
        All training rows (every worker holds them; each takes its slice of each batch).
    optimizer : torch optimizer
    batch_size, epoch, seed : int
        Define the global batches (see :func:`epoch_batches`).
    rank, world_size : int
        This worker's slice of each batch.
    gather : callable, optional
        Concatenates a tensor across workers with gradients (DDP); identity when None.
    """
    model.train()
    torch.manual_seed(_seed(seed, 2, epoch, rank))
    device = images.device
    losses = []
    for batch in epoch_batches(len(images), batch_size, epoch, seed, world_size):
        part = len(batch) // world_size
        local = torch.as_tensor(batch[rank * part : (rank + 1) * part], device=device)
        image_features, text_features, scale = model(images[local], texts[local])
        if gather is not None:
            image_features, text_features = gather(image_features), gather(text_features)
        loss = clip_loss(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses)) if losses else math.nan


@torch.no_grad()
def evaluate(model: CLIP, images: torch.Tensor, texts: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Loss (mean over batches, in order) and retrieval metrics on held-out rows, no dropout.

    Returns
    -------
    dict
        ``loss``, ``recall@10``, ``recall@100``, ``mix&match``.
    """
    model.eval()
    image_features, text_features = model.encode_image(images), model.encode_text(texts)
    scale = model.logit_scale
    losses = [
        clip_loss(image_features[s : s + batch_size], text_features[s : s + batch_size], scale).item()
        for s in range(0, len(images), batch_size)
        if len(images[s : s + batch_size]) >= 2
    ]
    return {"loss": float(np.mean(losses)), **retrieval_metrics(image_features, text_features)}


@dataclass
class EarlyStopping:
    """Track the best validation loss; stop after ``patience`` epochs without improving.

    Attributes
    ----------
    patience : int
    best_loss : float
    best_epoch : int
        -1 before the first update.
    bad_epochs : int
    """

    patience: int
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record an epoch; True when it is the new best."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row failed to improve."""
        return self.bad_epochs >= self.patience

    @classmethod
    def replay(cls, patience: int, history: list[dict]) -> EarlyStopping:
        """Rebuild the state from logged epochs (``epoch``, ``val_loss``), e.g. on resume."""
        state = cls(patience)
        for row in history:
            state.update(row["epoch"], row["val_loss"])
        return state


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best weights by validation loss and the epoch log."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def epoch_record(epoch: int, train_loss: float, val: dict[str, float], scale: float) -> dict:
    """One row of the epoch log (and of metrics.jsonl)."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val["loss"],
        **{f"val_{k}": v for k, v in val.items() if k != "loss"},
        "logit_scale": scale,
    }


def fit(
    train_images: np.ndarray,
    train_texts: np.ndarray,
    val_images: np.ndarray,
    val_texts: np.ndarray,
    config: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train in one process with early stopping; keep a copy of the best weights.

    Parameters
    ----------
    train_images, train_texts, val_images, val_texts : (n, dim) float32 arrays
        L2-normalised features.
    config : TrainConfig
    on_epoch : callable, optional
        Called with each epoch's record.
    """
    tr_i, tr_t, va_i, va_t = (torch.as_tensor(a, dtype=torch.float32) for a in (train_images, train_texts, val_images, val_texts))
    model = build_model(tr_t.shape[1], tr_i.shape[1], config)
    optimizer = make_optimizer(model, config)
    stopper = EarlyStopping(config.patience)
    best_state: dict[str, torch.Tensor] = {}
    history = []
    for epoch in range(config.epochs):
        train_loss = train_epoch(model, tr_i, tr_t, optimizer, config.batch_size, epoch, config.seed)
        record = epoch_record(epoch, train_loss, evaluate(model, va_i, va_t, config.batch_size), model.logit_scale.item())
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if stopper.update(epoch, record["val_loss"]):
            best_state = copy.deepcopy(model.state_dict())  # a copy: never alias the live weights
        if stopper.should_stop:
            break
    return FitResult(best_state, stopper.best_epoch, history)
