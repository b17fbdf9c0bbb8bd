"""``niclip-ray evaluate`` through the CLI entry point."""

import pandas as pd

from niclip_ray.cli.main import run


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
