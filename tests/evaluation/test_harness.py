"""The evaluator end to end: input layouts, failed rows, backends, the written CSVs."""

import json

import pandas as pd
import pyarrow as pa
import pytest

from niclip_ray.cli.options import user_message
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.evaluation import evaluate, load_predictions, load_truth, write_results
from niclip_ray.tables import write_parquet_atomic


def _decode_rows():
    rows = []
    lists = {"m1": ["wm", "nback", "flanker"], "m2": ["flanker", "conflict", "wm"], "m3": ["wm", "flanker", "nback"]}
    for map_id, terms in lists.items():
        rows += [(map_id, "task", r + 1, t, 0.5 / (r + 1), None) for r, t in enumerate(terms)]
    rows += [("m1", "domain", 1, "memory", 0.9, None), ("m1", "domain", 2, "attention", 0.1, None)]
    rows += [("m2", "domain", 1, "attention", 0.8, None), ("m2", "domain", 2, "memory", 0.2, None)]
    rows += [("m4", None, None, None, None, "corrupt NIfTI")]
    return pd.DataFrame(rows, columns=["map_id", "level", "rank", "term", "prob", "error"])


TRUTH_WIDE = pd.DataFrame(
    {"map_id": ["m1", "m2", "m3", "m4"], "task": ["nback", "flanker|conflict", "flanker", "nback"],
     "domain": ["memory", "attention", "", "memory"]}
)


def test_long_and_wide_truth_agree(tmp_path):
    long = pd.DataFrame(
        [("m1", "task", "nback"), ("m2", "task", "flanker"), ("m2", "task", "conflict"), ("m3", "task", "flanker"),
         ("m4", "task", "nback"), ("m1", "process", "memory"), ("m2", "domain", "attention"), ("m4", "domain", "memory")],
        columns=["map_id", "level", "term"],
    )
    path = tmp_path / "wide.csv"
    TRUTH_WIDE.to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_truth(path), load_truth(long))
    assert len(load_truth(path)) == 8


def test_evaluate_hand_computed_summary_and_failed_maps():
    result = evaluate(_decode_rows(), TRUTH_WIDE, k={"task": 1, "domain": 1}, n_permutations=100, dataset="toy")
    summary = result.summary.set_index("level")
    task = summary.loc["task"]
    # m1 nback at 2 (miss), m2 flanker at 1 + conflict at 2 (recall 1/2), m3 flanker at 2 (miss); m4 failed
    assert (task["n_images"], task["n_missing"]) == (3, 1)
    assert task["mean_hit_at_k"] == pytest.approx(1 / 3)
    assert task["mean_recall_at_k"] == pytest.approx(0.5 / 3)
    assert task["median_best_rank"] == pytest.approx(2.0)
    assert task["mrr"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert summary.loc["domain", "mean_hit_at_k"] == pytest.approx(1.0)
    m2 = result.details.query("level == 'task' and prediction_label == 'm2'").iloc[0]
    assert json.loads(m2["true_labels_json"]) == ["conflict", "flanker"]
    assert json.loads(m2["top_predictions_json"]) == ["flanker"]
    terms = result.per_term.query("level == 'task'").set_index("term")
    assert terms.loc["flanker", "n_images"] == 2 and terms.loc["flanker", "hit_at_k"] == pytest.approx(0.5)
    assert terms.loc["conflict", "mrr"] == pytest.approx(0.5)
    assert set(terms.index) == {"nback", "flanker", "conflict"}


def test_backends_are_scored_separately_with_the_same_permutations():
    a = _decode_rows().assign(backend="niclip")
    b = _decode_rows().assign(backend="copy")
    result = evaluate(pd.concat([a, b]), TRUTH_WIDE, n_permutations=50, seed=3)
    by_backend = result.summary.set_index(["backend", "level"]).drop(columns=["backend"], errors="ignore")
    pd.testing.assert_series_equal(
        by_backend.loc[("niclip", "task")], by_backend.loc[("copy", "task")], check_names=False
    )
    again = evaluate(pd.concat([a, b]), TRUTH_WIDE, n_permutations=50, seed=3)
    pd.testing.assert_frame_equal(result.summary, again.summary)


def test_reads_a_decode_directory_and_writes_the_reference_columns(tmp_path):
    rows = _decode_rows()
    write_parquet_atomic(pa.Table.from_pandas(rows.iloc[:5], preserve_index=False), tmp_path / "run/decode/part-00000.parquet")
    write_parquet_atomic(pa.Table.from_pandas(rows.iloc[5:], preserve_index=False), tmp_path / "run/decode/part-00001.parquet")
    assert len(load_predictions(tmp_path / "run")) == len(rows)
    result = evaluate(tmp_path / "run", TRUTH_WIDE, n_permutations=20, dataset="toy", meta={"model_name": "tiny"})
    paths = write_results(result, tmp_path / "eval", dataset="toy")
    summary = pd.read_csv(paths["summary"])
    reference = ["dataset", "source", "category", "sub_category", "section", "model_id", "model_name",
                 "vocabulary_label", "backend", "level", "k", "n_images", "mean_recall_at_k", "mean_hit_at_k",
                 "median_best_rank"]
    assert set(reference) <= set(summary.columns)
    assert summary["model_name"].tolist() == ["tiny", "tiny"]
    assert {"prediction_label", "num_true_labels", "recall_at_k", "hit_at_k", "best_rank", "true_labels_json",
            "top_predictions_json"} <= set(pd.read_csv(paths["details"]).columns)
    assert {"null_mean_hit_at_k", "null_std_hit_at_k", "empirical_p_value", "normalized_hit_at_k", "above_chance",
            "mrr"} <= set(pd.read_csv(paths["per_term"]).columns)
    assert paths["summary"].name == "eval-toy_results.csv"


@pytest.mark.parametrize(
    ("predictions", "truth", "message"),
    [
        (_decode_rows().drop(columns="rank"), TRUTH_WIDE, "lacks column"),
        (pd.concat([_decode_rows(), _decode_rows().iloc[[0]]]), TRUTH_WIDE, "listed twice"),
        (_decode_rows().assign(level="region"), TRUTH_WIDE, "unknown level"),
        (_decode_rows(), pd.DataFrame({"map_id": ["m1"], "label": ["x"]}), "needs columns"),
        (_decode_rows(), TRUTH_WIDE.assign(map_id=["z1", "z2", "z3", "z4"]), "no map_id is shared"),
    ],
)
def test_bad_inputs_raise_clear_errors(predictions, truth, message):
    with pytest.raises(InputError, match=message):
        evaluate(predictions, truth, n_permutations=5)


def test_bad_k_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="positive integer"):
        evaluate(_decode_rows(), TRUTH_WIDE, k={"task": 0})
    with pytest.raises(ParameterError, match="n_permutations must be at least 1") as caught:
        evaluate(_decode_rows(), TRUTH_WIDE, n_permutations=0)
    assert user_message(caught.value) == "--permutations must be at least 1, got 0"
    with pytest.raises(InputError, match="not found"):
        load_truth(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="no predictions"):
        load_predictions(tmp_path)


def test_a_level_without_scored_maps_keeps_the_full_row():
    # the backend predicts concepts, but not for map a
    predictions = pd.DataFrame({"map_id": ["a", "b"], "level": ["task", "concept"], "rank": [1, 1], "term": ["x", "c"]})
    truth = pd.DataFrame({"map_id": ["a"], "task": ["x"], "concept": ["c"]})
    summary = evaluate(predictions, truth, n_permutations=5).summary.set_index("level")
    assert (summary.loc["concept", "n_images"], summary.loc["concept", "n_missing"]) == (0, 1)
    assert summary.loc["concept", ["mean_hit_at_k", "p_value_hit_at_k"]].isna().all()
    assert summary.loc["task", "mean_hit_at_k"] == 1.0


def test_a_backend_is_scored_on_the_levels_it_predicts():
    niclip = _decode_rows().assign(backend="niclip")
    tasks_only = _decode_rows().query("level == 'task'").assign(backend="gclda")
    failed = pd.DataFrame({"map_id": ["m1"], "level": [None], "rank": [None], "term": [None], "error": ["boom"],
                           "backend": ["broken"]})
    summary = evaluate(pd.concat([niclip, tasks_only, failed]), TRUTH_WIDE, n_permutations=5).summary
    levels = summary.groupby("backend")["level"].apply(sorted).to_dict()
    assert levels == {"broken": ["domain", "task"], "gclda": ["task"], "niclip": ["domain", "task"]}
    assert summary.query("backend == 'broken'")["n_images"].tolist() == [0, 0]
