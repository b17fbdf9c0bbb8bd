"""Model artifacts: CLIP heads (reference layout) and loss, checkpoints, vocabularies, bundles.

The heads and the loss are pure torch and re-exported here; :mod:`.checkpoint`,
:mod:`.vocabulary`, :mod:`.bundle` and :mod:`.reference` hold the files around them.
"""

from niclip_ray.model.clip import CLIP, ProjectionHead, ResidualHead
from niclip_ray.model.loss import clip_loss

__all__ = ["CLIP", "ProjectionHead", "ResidualHead", "clip_loss"]
