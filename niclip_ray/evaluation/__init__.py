"""Evaluation harness: recall@k, hit@k, best rank and MRR per level, permutation null, per-term table."""

from niclip_ray.evaluation.harness import DEFAULT_K, EvaluationResult, evaluate, write_results
from niclip_ray.evaluation.inputs import load_predictions, load_truth

__all__ = ["DEFAULT_K", "EvaluationResult", "evaluate", "load_predictions", "load_truth", "write_results"]
