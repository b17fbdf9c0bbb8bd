"""``--rank-by`` of ``niclip-ray decode``, and the flags and notes printed with a map's table."""

import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.console import print_maps
from niclip_ray.cli.main import run
from niclip_ray.ontology import load_ontology
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-rank-by")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


def test_rank_by_bayes_factor_orders_the_tasks(bundle, ray_local, tmp_path, capsys):
    path, atlas = bundle
    code = run(["decode", load_sample_motor_activation_image(), "--model", str(path), "--atlas-dir", str(atlas),
                "--out", str(tmp_path / "o"), "--topk", "5", "--standin", "--rank-by", "bayes-factor", "--no-csv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "top predictions (tasks by bayes factor)" in captured.out
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    task = results[results["level"] == "task"].sort_values("rank")
    assert (np.diff(task["bayes_factor"].to_numpy()) <= 0).all()
    assert task["against_map"].tolist() == (task["bayes_factor"] < 1).tolist()
    assert results.loc[results["level"] != "task", "against_map"].isna().all()
    assert results["hub"].isna().all()  # one map: no hubs can be told


def test_an_unknown_rank_by_is_refused(bundle, tmp_path, capsys):
    path, _ = bundle
    code = run(["decode", load_sample_motor_activation_image(), "--model", str(path), "--out", str(tmp_path / "o"),
                "--rank-by", "prior"])
    assert code == 2
    assert "must be one of posterior, bayes-factor, likelihood, got 'prior'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _rows(map_id, task, concept, against, hub):
    common = {"map_id": map_id, "rank": 1, "prob": 0.5, "similarity": np.nan, "likelihood": np.nan}
    return pd.DataFrame([
        {**common, "level": "task", "term": task, "prior": 0.6, "bayes_factor": 0.67, "against_map": against,
         "hub": hub},
        {**common, "level": "concept", "term": concept, "prior": np.nan, "bayes_factor": np.nan, "against_map": None,
         "hub": None},
    ])


def test_flags_and_level_notes_are_printed(capsys):
    ontology = load_ontology("builtin")
    task = ontology.task_names[0]
    linked = ontology.concepts_of(task)[0]
    unlinked = next(c for c in ontology.concepts["name"] if c not in ontology.concepts_of(task))
    decoded = pd.concat([_rows("a", task, unlinked, True, True), _rows("b", task, linked, False, None)])
    print_maps(decoded, ["a", "b"], ontology=ontology)
    captured = capsys.readouterr()
    assert "against" in captured.out and "hub" in captured.out  # the flags column (wrapped at 80 characters)
    assert "note: 'against map'" in captured.err and "note: 'hub'" in captured.err
    assert f"note: map a: the top concept '{unlinked}' is not one the top task '{task}' measures" in captured.err
    assert "note: map b" not in captured.err
