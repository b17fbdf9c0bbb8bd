"""``niclip-ray evaluate`` through the CLI entry point."""

import json

import pandas as pd
import pytest

from niclip_ray.cli.main import run
from tests.retrieval.conftest import world  # noqa: F401  (the tiny retrieval world, as a fixture here)


def _write_inputs(tmp_path):
    rows = []
    for map_id, terms in {"m1": ["nback", "flanker"], "m2": ["flanker", "nback"]}.items():
        rows += [(map_id, "task", r + 1, t, 0.6 - 0.2 * r) for r, t in enumerate(terms)]
    pd.DataFrame(rows, columns=["map_id", "level", "rank", "term", "prob"]).to_parquet(tmp_path / "niclip.parquet")
    swapped = [(m, lvl, 3 - r, t, p) for m, lvl, r, t, p in rows]
    pd.DataFrame(swapped, columns=["map_id", "level", "rank", "term", "prob"]).to_csv(tmp_path / "other.csv", index=False)
    pd.DataFrame({"map_id": ["m1", "m2"], "task": ["nback", "flanker"]}).to_csv(tmp_path / "truth.csv", index=False)


def test_evaluate_writes_results_and_prints_the_table(tmp_path, capsys):
    _write_inputs(tmp_path)
    code = run([
        "evaluate", "--predictions", f"niclip={tmp_path / 'niclip.parquet'}", "--predictions",
        f"swapped={tmp_path / 'other.csv'}", "--truth", str(tmp_path / "truth.csv"), "--out", str(tmp_path / "eval"),
        "--k-task", "1", "--permutations", "50", "--dataset", "toy", "--meta", "model_name=tiny",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "niclip" in printed and "swapped" in printed and "eval-toy_results.csv" in printed
    summary = pd.read_csv(tmp_path / "eval" / "eval-toy_results.csv").set_index("backend")
    assert summary.loc["niclip", "mean_hit_at_k"] == 1.0
    assert summary.loc["swapped", "mean_hit_at_k"] == 0.0
    assert summary.loc["niclip", "model_name"] == "tiny"
    assert (tmp_path / "eval" / "eval-toy_per-term.csv").is_file()


def test_evaluate_reports_bad_input_in_one_line(tmp_path, capsys):
    _write_inputs(tmp_path)
    code = run(["evaluate", "--predictions", str(tmp_path / "missing"), "--truth", str(tmp_path / "truth.csv"),
                "--out", str(tmp_path / "eval")])
    assert code == 1
    assert "predictions not found" in capsys.readouterr().err


def test_evaluate_retrieval_writes_tables_and_prints_the_figures(world, ray_local, tmp_path, capsys):
    index = tmp_path / "index"
    assert run(["index", "build", "--corpus", str(world.corpus), "--features", str(world.features),
                "--model", str(world.bundle), "--out", str(index)]) == 0
    code = run(["evaluate", "--index", str(index), "--corpus", str(world.corpus), "--text-features",
                str(world.features / "text"), "--atlas-dir", str(world.atlas_dir), "--permutations", "50",
                "--out", str(tmp_path / "eval")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for label in ("recall@1", "recall@10", "median rank", "mean training map", "nearest text study"):
        assert label in captured.out
    figures = pd.read_csv(tmp_path / "eval" / "retrieval_image_to_text.csv")
    assert figures.loc[0, "n"] == len(world.split["test"]) and 0 < figures.loc[0, "median_rank_p"] <= 1
    tests = pd.read_csv(tmp_path / "eval" / "retrieval_paired_tests.csv")
    assert tests["baseline"].tolist() == ["mean_training_map", "nearest_text_study"]
    assert len(pd.read_csv(tmp_path / "eval" / "retrieval_map_correlations.csv")) == len(world.split["test"])
    record = json.loads((index / "evaluation.json").read_text())  # what `search text` reads beside the index
    mean_map = tests.set_index("baseline").loc["mean_training_map"]
    assert record["n_heldout"] == len(world.split["test"])
    assert record["text_to_map"] == pytest.approx({"mean_r": mean_map["mean_r_ridge"],
                                                   "mean_r_mean_training_map": mean_map["mean_r_baseline"],
                                                   "p": mean_map["p"]})


def test_evaluate_needs_something_to_evaluate(tmp_path, capsys):
    assert run(["evaluate", "--out", str(tmp_path)]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err
    assert run(["evaluate", "--index", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "--index needs --corpus and --text-features" in capsys.readouterr().err
