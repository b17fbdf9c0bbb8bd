"""Truth tables from map labels, and the HCP benchmark mapping."""

import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.evaluation import HCP_BENCHMARK, load_truth, truth_from_labels

TERMS = {
    "n-back": {"task": ["n-back task"], "concept": ["working memory"]},
    "flanker": {"task": ["eriksen flanker task"], "concept": ["conflict", "attention"]},
}


def test_truth_from_labels_expands_each_map():
    truth = truth_from_labels({"s1": "n-back", "s2": "flanker"}, TERMS)
    assert truth.values.tolist() == [
        ["s1", "concept", "working memory"], ["s1", "task", "n-back task"],
        ["s2", "concept", "attention"], ["s2", "concept", "conflict"], ["s2", "task", "eriksen flanker task"],
    ]
    pd.testing.assert_frame_equal(load_truth(truth), truth)


def test_unknown_labels_and_levels():
    with pytest.raises(InputError, match="label 'stroop' has no terms"):
        truth_from_labels({"s1": "stroop"}, TERMS)
    with pytest.raises(InputError, match="unknown level 'region'"):
        truth_from_labels({"s1": "x"}, {"x": {"region": ["dlpfc"]}})


def test_hcp_benchmark_is_the_reference_seven_maps():
    assert len(HCP_BENCHMARK) == 7 and HCP_BENCHMARK["map_id"].is_unique
    assert set(load_truth(HCP_BENCHMARK[["map_id", "task"]])["level"]) == {"task"}
