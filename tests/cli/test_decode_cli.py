"""``niclip-ray decode``: one map prints a table; a NeuroVault collection with a bad map; outputs."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.main import run
from niclip_ray.model.bundle import load_bundle
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-decode")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


def test_single_map(bundle, ray_local, tmp_path, capsys):
    path, atlas = bundle
    motor = load_sample_motor_activation_image()
    code = run(["decode", motor, "--model", str(path), "--atlas-dir", str(atlas), "--out", str(tmp_path / "o"),
                "--topk", "4", "--standin"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "image_10426: top predictions" in captured.out and "domain" in captured.out
    assert "stand-in atlas" in captured.err
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    assert results.groupby("level").size().to_dict() == {"task": 4, "concept": 4, "domain": 10}
    task_csv = pd.read_csv(tmp_path / "o" / "csv" / "image_10426_task_predictions.csv")
    assert task_csv.columns.tolist() == ["pred", "prob", "similarity", "likelihood", "prior_prob", "joint_prob",
                                         "bayes_factor"]
    task = results[results.level == "task"].sort_values("rank")
    np.testing.assert_allclose(task_csv["prob"], task["prob"], rtol=1e-5)  # CSVs keep 6 significant digits
    assert pd.read_csv(tmp_path / "o" / "csv" / "image_10426_domain_predictions.csv").columns.tolist() == ["pred", "prob"]


def test_top_k_all_keeps_every_term(bundle, ray_local, tmp_path, capsys):
    path, atlas = bundle
    code = run(["decode", load_sample_motor_activation_image(), "--model", str(path), "--atlas-dir", str(atlas),
                "--out", str(tmp_path / "o"), "--top-k", "all", "--standin", "--no-csv"])
    assert code == 0, capsys.readouterr().err
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    assert len(results[results.level == "task"]) == len(load_bundle(path).vocabulary)
    assert results["error"].isna().all() and Path(results["source_path"].iloc[0]).is_absolute()
    assert run(["decode", load_sample_motor_activation_image(), "--model", str(path), "--top-k", "some",
                "--out", str(tmp_path / "p")]) != 0


def test_collection_with_a_bad_map(bundle, ray_local, tmp_path, capsys):
    path, atlas = bundle
    coll = tmp_path / "nv" / "neurovault" / "collection_658"
    coll.mkdir(parents=True)
    shutil.copy(load_sample_motor_activation_image(), coll / "image_10426.nii.gz")
    (coll / "image_10426_metadata.json").write_text(json.dumps({"name": "left vs right motor"}))
    (coll / "image_99.nii.gz").write_bytes(b"\x1f\x8b\x08garbage")
    img = nib.load(load_sample_motor_activation_image())
    nib.save(nib.Nifti1Image(-np.asarray(img.dataobj), img.affine), coll / "image_100.nii.gz")
    code = run(["decode", "--collection", "658", "--neurovault-dir", str(tmp_path / "nv"), "--model", str(path),
                "--atlas-dir", str(atlas), "--out", str(tmp_path / "o"), "--tasks-only", "--no-csv", "--standin"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "collection_658/image_99" in captured.err and "1 failed" in captured.out
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    ok = results[results.error.isna()]
    assert set(ok["map_id"]) == {"collection_658/image_100", "collection_658/image_10426"}
    assert set(ok["level"]) == {"task"}
    assert not (tmp_path / "o" / "csv").exists()


def test_nothing_decodable_exits_1(bundle, ray_local, tmp_path, capsys):
    path, atlas = bundle
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("nope")
    argv = ["decode", str(bad), "--model", str(path), "--atlas-dir", str(atlas), "--out", str(tmp_path / "o")]
    assert run(argv + ["--standin"]) == 1
    assert "none of the 1 maps could be decoded" in capsys.readouterr().err


def test_a_standin_bundle_decodes_only_when_asked(bundle, tmp_path, capsys):
    path, atlas = bundle
    code = run(["decode", load_sample_motor_activation_image(), "--model", str(path), "--atlas-dir", str(atlas),
                "--out", str(tmp_path / "o")])
    assert code == 1 and "pass --standin" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_hierarchical_without_ontology_fails_before_ray(tmp_path, capsys):
    bundle = toy_bundle(tmp_path / "b", tmp_path / "atlas", with_ontology=False)
    code = run(["decode", load_sample_motor_activation_image(), "--model", str(bundle), "--hierarchical",
                "--atlas-dir", str(tmp_path / "atlas"), "--standin", "--out", str(tmp_path / "o")])
    assert code == 1 and "has no ontology" in capsys.readouterr().err


def test_missing_bundle_exits_1(tmp_path, capsys):
    assert run(["decode", load_sample_motor_activation_image(), "--model", str(tmp_path / "none"),
                "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_many_maps_print_one_line_each(bundle, tmp_path, capsys):
    path, atlas = bundle
    img = nib.load(load_sample_motor_activation_image())
    data = np.asarray(img.dataobj, dtype=np.float32)
    maps = tmp_path / "maps"
    maps.mkdir()
    for name, scale in (("a", 1.0), ("b", -1.0), ("c", 2.0), ("d", -0.5)):
        nib.save(nib.Nifti1Image(scale * data, img.affine), maps / f"{name}.nii.gz")
    code = run(["decode", str(maps), "--model", str(path), "--atlas-dir", str(atlas), "--out", str(tmp_path / "o"),
                "--tasks-only", "--no-csv", "--standin"])
    out = capsys.readouterr().out
    assert code == 0 and "top predictions" not in out
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    top = results[results["rank"] == 1].set_index("map_id")
    assert sorted(top.index) == ["a", "b", "c", "d"]  # the file names, not maps/a
    for map_id, row in top.iterrows():
        assert f"{map_id}: {row['term']} ({row['prob']:.3f})\n" in out
