"""CLIP heads (reference layout) and the symmetric InfoNCE loss. Pure torch, no Ray."""

from niclip_ray.model.clip import CLIP, ProjectionHead, ResidualHead
from niclip_ray.model.loss import clip_loss

__all__ = ["CLIP", "ProjectionHead", "ResidualHead", "clip_loss"]
