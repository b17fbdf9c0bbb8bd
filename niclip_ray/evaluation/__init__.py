"""Evaluation harness: recall@k, hit@k, best rank and MRR per level, permutation null, per-term table."""

from niclip_ray.evaluation.harness import DEFAULT_K, EvaluationResult, evaluate, write_results
from niclip_ray.evaluation.mappings import HCP_BENCHMARK, truth_from_labels
from niclip_ray.evaluation.readers import load_predictions, load_truth

__all__ = [
    "DEFAULT_K", "HCP_BENCHMARK", "EvaluationResult", "evaluate", "load_predictions", "load_truth",
    "truth_from_labels", "write_results",
]
