"""Symmetric InfoNCE (CLIP) loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``0.5 * [CE(s I T^T, diag) + CE(s T I^T, diag)]``, mean over the batch.

    Parameters
    ----------
    image_features, text_features : (batch, dim) tensors
        Row ``i`` of each is a matching pair (normally unit norm).
    logit_scale : scalar tensor
        Multiplies the similarities linearly, as in the reference.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            f"image and text features must have the same shape, got {tuple(image_features.shape)} "
            f"and {tuple(text_features.shape)}"
        )
    logits = logit_scale * image_features @ text_features.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
