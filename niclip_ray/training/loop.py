"""The training loop in plain torch: batches, one epoch, evaluation, early stopping.

:func:`run_epochs` is the one epoch loop. :func:`fit` calls it in one process;
:mod:`niclip_ray.training.ray_train` calls it on each Ray Train worker with its rank, the
world size, an autograd-aware all-gather (so a DDP epoch computes the loss over the
*global* batch, all negatives, and gives the same weights as :func:`fit`), the epochs a
checkpoint restored, and an ``on_epoch_end`` hook that checkpoints and reports. Nothing
here imports Ray.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from niclip_ray.errors import ParameterError
from niclip_ray.model import CLIP, clip_loss
from niclip_ray.training.metrics import retrieval_metrics

Gather = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters (defaults: the reference's, ``docs/method.md`` "Training").

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
            "epochs": (self.epochs >= 1, "must be at least 1"),
            "batch_size": (self.batch_size >= 2, "must be at least 2"),
            "lr": (self.lr > 0, "must be positive"),
            "weight_decay": (self.weight_decay >= 0, "must not be negative"),
            "dropout": (0 <= self.dropout < 1, "must be in [0, 1)"),
            "patience": (self.patience >= 1, "must be at least 1"),
        }
        for name, (ok, rule) in checks.items():
            if not ok:
                raise ParameterError(name, f"{rule}, got {getattr(self, name)}")

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

    Raises
    ------
    ParameterError
        When ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        raise ParameterError("batch_size", f"must be a multiple of world_size ({world_size}), got {batch_size}")
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
    def replay(cls, patience: int, history: Sequence[dict]) -> EarlyStopping:
        """Rebuild the state from logged epochs (``epoch``, ``val_loss``), e.g. on resume."""
        state = cls(patience)
        for row in history:
            state.update(row["epoch"], row["val_loss"])
        return state


def epoch_record(epoch: int, train_loss: float, val: dict[str, float], scale: float) -> dict:
    """One row of the epoch log (and of metrics.jsonl)."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val["loss"],
        **{f"val_{k}": v for k, v in val.items() if k != "loss"},
        "logit_scale": scale,
    }


@dataclass(frozen=True)
class TrainTensors:
    """The rows one loop trains and validates on.

    Attributes
    ----------
    train_images, train_texts, val_images, val_texts : (n, dim) float32 tensors
        L2-normalised features, all on the device the model trains on.
    """

    train_images: torch.Tensor
    train_texts: torch.Tensor
    val_images: torch.Tensor
    val_texts: torch.Tensor

    @classmethod
    def from_arrays(
        cls,
        train_images: np.ndarray,
        train_texts: np.ndarray,
        val_images: np.ndarray,
        val_texts: np.ndarray,
        device: torch.device | str | None = None,
    ) -> TrainTensors:
        """float32 tensors on ``device`` from (n, dim) arrays."""
        arrays = (train_images, train_texts, val_images, val_texts)
        return cls(*(torch.as_tensor(a, dtype=torch.float32, device=device) for a in arrays))


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`run_epochs` hands its ``on_epoch_end`` hook after each epoch.

    Attributes
    ----------
    record : dict
        The epoch's row (:func:`epoch_record`).
    seconds : float
        Wall time of the training pass (not the validation).
    improved : bool
        True when the epoch has the lowest validation loss so far.
    model : CLIP
        The live model, unwrapped from DDP.
    """

    record: dict
    seconds: float
    improved: bool
    model: CLIP


def unwrap(model: torch.nn.Module) -> CLIP:
    """The CLIP inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def run_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainTensors,
    config: TrainConfig,
    on_epoch_end: Callable[[EpochEnd], None],
    *,
    done: Sequence[dict] = (),
    rank: int = 0,
    world_size: int = 1,
    gather: Gather | None = None,
) -> EarlyStopping:
    """Train epoch after epoch until ``config.epochs`` or early stopping.

    Parameters
    ----------
    model : CLIP, or a DDP wrapper of it
    optimizer : torch optimizer
    data : TrainTensors
    config : TrainConfig
    on_epoch_end : callable
        Called with an :class:`EpochEnd` after each epoch (log, keep weights, checkpoint).
    done : list of dict, optional
        Records of the epochs already run (a restored checkpoint's log, with the model and
        optimizer already loaded): training resumes at epoch ``len(done)`` with the early
        stopping state they imply.
    rank, world_size, gather
        This worker's slice of each batch and the all-gather (see :func:`train_epoch`).

    Returns
    -------
    EarlyStopping
        The final state; ``best_epoch`` is the epoch with the lowest validation loss.
    """
    stopper = EarlyStopping.replay(config.patience, done)
    for epoch in range(len(done), config.epochs):
        if stopper.should_stop:
            break
        started = time.perf_counter()
        train_loss = train_epoch(
            model, data.train_images, data.train_texts, optimizer, config.batch_size, epoch, config.seed,
            rank, world_size, gather,
        )
        seconds = time.perf_counter() - started
        module = unwrap(model)
        val = evaluate(module, data.val_images, data.val_texts, config.batch_size)
        record = epoch_record(epoch, train_loss, val, module.logit_scale.item())
        improved = stopper.update(epoch, record["val_loss"])
        on_epoch_end(EpochEnd(record, seconds, improved, module))
    return stopper


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best weights by validation loss and the epoch log."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)


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
    data = TrainTensors.from_arrays(train_images, train_texts, val_images, val_texts)
    model = build_model(data.train_texts.shape[1], data.train_images.shape[1], config)
    optimizer = make_optimizer(model, config)
    history: list[dict] = []
    best_state: dict[str, torch.Tensor] = {}

    def keep(end: EpochEnd) -> None:
        nonlocal best_state
        history.append(end.record)
        if end.improved:
            best_state = copy.deepcopy(end.model.state_dict())  # a copy: never alias the live weights
        if on_epoch is not None:
            on_epoch(end.record)

    stopper = run_epochs(model, optimizer, data, config, keep)
    return FitResult(best_state, stopper.best_epoch, history)
