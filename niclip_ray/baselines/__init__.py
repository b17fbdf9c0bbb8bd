"""NiMARE baselines (Neurosynth-style correlation decoder, GC-LDA) in the decode contract."""

from niclip_ray.baselines.annotations import annotate, phrase_counts
from niclip_ray.baselines.base import Baseline
from niclip_ray.baselines.gclda import GCLDABaseline
from niclip_ray.baselines.neurosynth import NeurosynthBaseline

__all__ = ["Baseline", "GCLDABaseline", "NeurosynthBaseline", "annotate", "phrase_counts"]
