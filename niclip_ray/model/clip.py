"""The NiCLIP model: small heads that map image and text features into one space.

The module and attribute names reproduce the reference ``braindec/model.py`` so that its
state dicts (the paper's ``.pth`` weights) load with a strict key check; the key layout is
spelt out in :mod:`niclip_ray.model.checkpoint`.

``logit_scale`` is used *linearly*, as in the reference (no ``exp``, no clamp).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from niclip_ray.errors import InputError, ParameterError
from niclip_ray.model.checkpoint import canonical_state_dict, checkpoint_dims
from niclip_ray.vectors import NORM_EPS

#: Initial value of the learnable logit scale used in the reference training runs.
LOGIT_SCALE_INIT = 10.0


class ResidualHead(nn.Module):
    """``y = LayerNorm(x + Dropout(GELU(Linear(x))))`` on a ``dim``-wide input.

    Parameters
    ----------
    dim : int
        Input and output width.
    dropout : float
        Dropout probability.
    """

    def __init__(self, dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.gelu = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, dim)`` to ``(batch, dim)``."""
        return self.layer_norm(x + self.dropout(self.gelu(self.fc(x))))


class ProjectionHead(nn.Module):
    """``p = Linear(x); y = LayerNorm(p + Dropout(Linear(GELU(p))))``.

    Parameters
    ----------
    in_dim, out_dim : int
        Input and output widths.
    dropout : float
        Dropout probability.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, out_dim)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, in_dim)`` to ``(batch, out_dim)``."""
        projected = self.projection(x)
        return self.layer_norm(projected + self.dropout(self.fc(self.gelu(projected))))


class _Tower(nn.Module):
    """A ``model`` attribute holding the blocks, as the reference nests them."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class CLIP(nn.Module):
    """Image and text heads of NiCLIP.

    The image side is three residual blocks on the atlas dimension (DiFuMo is already
    512-d, so there is no projection); the text side projects the LLM embedding to the
    same width and adds two residual blocks. Both outputs are L2-normalised.

    Parameters
    ----------
    text_dim : int
        Width of the text embeddings (4096 for the 7B LLMs).
    image_dim : int
        Width of the image features (the atlas dimension, 512 for DiFuMo-512); also the
        width of the shared space.
    dropout : float
        Dropout probability of every block.
    logit_scale : float
        Initial value of the learnable, linearly used logit scale.
    """

    def __init__(
        self, text_dim: int = 4096, image_dim: int = 512, dropout: float = 0.5, logit_scale: float = LOGIT_SCALE_INIT
    ) -> None:
        super().__init__()
        if text_dim < 1 or image_dim < 1:
            raise InputError(f"CLIP dims must be positive, got text_dim={text_dim}, image_dim={image_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError("dropout", f"must be in [0, 1), got {dropout}")
        self.text_dim = int(text_dim)
        self.image_dim = int(image_dim)
        self.image_model = _Tower([ResidualHead(image_dim, dropout) for _ in range(3)])
        self.text_model = _Tower(
            [ProjectionHead(text_dim, image_dim, dropout), ResidualHead(image_dim, dropout), ResidualHead(image_dim, dropout)]
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features, ``(batch, image_dim)`` -> ``(batch, image_dim)``."""
        _check_width(x, self.image_dim, "image features")
        return F.normalize(self.image_model(x), dim=-1, eps=NORM_EPS)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features, ``(batch, text_dim)`` -> ``(batch, image_dim)``."""
        _check_width(x, self.text_dim, "text embeddings")
        return F.normalize(self.text_model(x), dim=-1, eps=NORM_EPS)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a batch of pairs.

        Returns
        -------
        image_features, text_features : (batch, image_dim) tensors, unit norm
        logit_scale : scalar tensor, to multiply cosine similarities with
        """
        return self.encode_image(image), self.encode_text(text), self.logit_scale

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], dropout: float = 0.0) -> CLIP:
        """Build a model whose dims are read from a reference-layout state dict, and load it.

        A DDP ``module.`` prefix is stripped and a scalar-like ``logit_scale`` of any shape
        is accepted (:func:`~niclip_ray.model.checkpoint.canonical_state_dict`); the load
        is strict otherwise.

        Parameters
        ----------
        state_dict : mapping of str to tensor
            Weights in the reference key layout (a ``.pth`` from the paper, or ours).
        dropout : float
            Dropout of the built model (0 for inference).

        Raises
        ------
        InputError
            When keys are missing or unexpected, or shapes disagree.
        """
        state = canonical_state_dict(state_dict)
        dims = checkpoint_dims(state)
        model = cls(text_dim=dims.text_dim, image_dim=dims.image_dim, dropout=dropout)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(f"state dict does not fit the CLIP layout: {exc}") from exc
        return model


def _check_width(x: torch.Tensor, width: int, what: str) -> None:
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{what} must have shape (batch, {width}), got {tuple(x.shape)}")
