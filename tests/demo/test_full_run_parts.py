"""Parts of the real-scale run that need no real data: paths, re-ranking, the headline table, the CLI's checks."""

import pandas as pd
import pytest

from niclip_ray.cli.main import run
from niclip_ray.full_run import data_paths, headline, rerank, timed


def test_data_paths(tmp_path):
    (tmp_path / "nimare").mkdir()
    (tmp_path / "cognitive_atlas").mkdir()
    assert data_paths(tmp_path) == (tmp_path / "nimare", tmp_path / "cognitive_atlas")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert data_paths(bare) == (bare, None)  # NiMARE's own data dir; the Cognitive Atlas from the API


def test_rerank_keeps_a_vocabulary_and_ranks_again():
    rows = pd.DataFrame({
        "backend": ["a"] * 4 + ["b"] * 2, "map_id": ["m"] * 6, "level": ["task"] * 6,
        "term": ["x", "y", "z", "w", "z", "x"], "rank": [1, 2, 3, 4, 1, 2],
    })
    kept = rerank(rows, {"x", "z"})
    assert kept.sort_values(["backend", "rank"])[["backend", "term", "rank"]].values.tolist() == [
        ["a", "x", 1], ["a", "z", 2], ["b", "z", 1], ["b", "x", 2]]


def test_headline_puts_task_figures_side_by_side():
    per_label = pd.DataFrame([
        ("niclip", "n-back", "task", 3, stat, obs, null, p)
        for stat, obs, null, p in (("median_best_rank", 4.0, 20.0, 0.001), ("hit@10", 0.9, 0.2, 0.001),
                                   ("hit@1", 0.3, 0.01, 0.001), ("hit@5", 0.6, 0.1, 0.001), ("mrr", 0.4, 0.1, 0.001))
    ] + [("niclip", "n-back", "concept", 3, "hit@10", 0.5, 0.5, 1.0)],
        columns=["backend", "label", "level", "n_maps", "statistic", "observed", "null_mean", "p_value"])
    known = pd.DataFrame({"backend": ["niclip", "niclip"], "kind": ["n-back", "all"], "observed": [0.9, 0.8],
                          "null_mean": [0.5, 0.5], "p_value": [0.01, 0.001]})
    table = headline(per_label, known)
    row = table.iloc[0]
    assert (row["median_best_rank"], row["median_best_rank null"], row["hit@10"]) == (4.0, 20.0, 0.9)
    assert (row["two-way"], row["two-way p"]) == (0.8, 0.001)
    assert len(table) == 1  # the concept row is not a task figure


def test_full_run_options_go_together(tmp_path, capsys):
    assert run(["demo", "--full", "--out", str(tmp_path / "o")]) != 0
    assert "--full needs --data-dir" in capsys.readouterr().err
    assert run(["demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) != 0
    assert "go with --full" in capsys.readouterr().err
    assert run(["demo", "--sections", "title", "--out", str(tmp_path / "o")]) != 0
    assert "go with --full" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sections_are_checked_and_kept_in_order():
    import typer

    from niclip_ray.cli.demo import parse_sections

    assert parse_sections("title") == ("title",)
    assert parse_sections(" title+keywords , title,title ") == ("title+keywords", "title")
    for bad in ("abstract", "", "title,body"):
        with pytest.raises(typer.BadParameter, match="--sections takes title and/or title\\+keywords"):
            parse_sections(bad)


def test_stage_times_add_up_over_runs():
    times, said = {"features": 100.0}, []
    with timed(times, "features", said.append):
        pass
    with timed(times, "train", said.append):
        pass
    assert 100.0 <= times["features"] < 101.0 and times["train"] < 1.0
    assert said[0].startswith("features: ") and said[0].endswith(" s")  # this run's time, not the sum
