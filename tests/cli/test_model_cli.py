"""``niclip-ray model``: import-reference, info, attach-vocabulary; exit codes and messages."""

import json

import numpy as np
import torch

from niclip_ray._testing import toy_state_dict, toy_vocabulary
from niclip_ray.cli.main import run
from niclip_ray.model.bundle import load_bundle, save_bundle
from niclip_ray.model.vocabulary import write_vocabulary
from niclip_ray.ontology import load_ontology


def reference_files(tmp_path, names):
    rng = np.random.default_rng(1)
    torch.save(toy_state_dict(text_dim=12, dim=8), tmp_path / "model.pth")
    (tmp_path / "vocab.txt").write_text("\n".join(names))
    np.save(tmp_path / "vocab-combined.npy", rng.standard_normal((len(names), 12)).astype(np.float32))
    np.save(tmp_path / "prior.npy", np.full(len(names), 1 / len(names)))
    return ["--model", str(tmp_path / "model.pth"), "--vocabulary", str(tmp_path / "vocab.txt"),
            "--vocabulary-emb", str(tmp_path / "vocab-combined.npy"), "--vocabulary-prior", str(tmp_path / "prior.npy")]


def test_import_reference_and_info(tmp_path, capsys):
    names = load_ontology("builtin").task_names
    args = reference_files(tmp_path, names)
    code = run(["model", "import-reference", *args, "--cognitiveatlas", "builtin", "--dim", "8",
                "--logit-scale", "20", "--out", str(tmp_path / "bundle")])
    assert code == 0, capsys.readouterr().err
    assert f"{len(names)} terms" in capsys.readouterr().out
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.logit_scale == 20.0 and bundle.config["atlas_id"] == "difumo8-2mm"
    assert run(["model", "info", str(tmp_path / "bundle")]) == 0
    text = capsys.readouterr().out
    assert "files verified" in text and "20 / 10" in text and "55 tasks" in text


def test_import_reference_order_mismatch_is_one_line(tmp_path, capsys):
    names = load_ontology("builtin").task_names
    args = reference_files(tmp_path, [names[1], names[0], *names[2:]])
    code = run(["model", "import-reference", *args, "--cognitiveatlas", "builtin", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1 and "another order" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_info_shows_training_metrics(tmp_path, capsys):
    metrics = {"folds": [{"fold": 0}, {"fold": 1}], "selected": {"fold": 1, "test_recall@10": 0.3356}}
    path = save_bundle(tmp_path / "b", toy_state_dict(12, 8), {"metrics": metrics, "atlas_id": "difumo8-2mm"})
    assert run(["model", "info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "metric folds" in text and "2 entries" in text and "metric selected.test_recall@10" in text
    assert "0.3356" in text and "difumo8-2mm" in text


def test_info_on_tampered_bundle(tmp_path, capsys):
    path = save_bundle(tmp_path / "b", toy_state_dict(12, 8), {})
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "logit_scale": 1.0}))
    assert run(["model", "info", str(path)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_attach_vocabulary(tmp_path, capsys):
    path = save_bundle(tmp_path / "b", toy_state_dict(12, 8), {})
    assert run(["model", "info", str(path)]) == 0
    assert "attach one before decoding" in capsys.readouterr().out
    names = load_ontology("builtin").task_names
    write_vocabulary(toy_vocabulary(names, text_dim=12), tmp_path / "vocabulary.parquet")
    code = run(["model", "attach-vocabulary", str(path), "--vocabulary", str(tmp_path / "vocabulary.parquet"),
                "--ontology", "builtin"])
    assert code == 0, capsys.readouterr().err
    bundle = load_bundle(path)
    assert bundle.vocabulary["name"].tolist() == names and bundle.ontology is not None
    write_vocabulary(toy_vocabulary(names, text_dim=5), tmp_path / "narrow.parquet")
    assert run(["model", "attach-vocabulary", str(path), "--vocabulary", str(tmp_path / "narrow.parquet")]) == 1
    assert "5-d but the text head takes 12-d" in capsys.readouterr().err


def test_attach_vocabulary_full_set_of_an_export(tmp_path, capsys):
    from tests.ontology.test_export import write_export

    export = tmp_path / "export"
    export.mkdir()
    write_export(export)
    path = save_bundle(tmp_path / "b", toy_state_dict(12, 8), {})
    names = load_ontology(export, reduced=False).task_names
    assert len(names) > len(load_ontology(export, reduced=True).task_names)
    write_vocabulary(toy_vocabulary(names, text_dim=12), tmp_path / "vocabulary.parquet")
    argv = ["model", "attach-vocabulary", str(path), "--vocabulary", str(tmp_path / "vocabulary.parquet"),
            "--ontology", str(export)]
    assert run(argv) == 1  # the reduced set (the default) does not match a full vocabulary's order
    capsys.readouterr()
    assert run([*argv, "--full"]) == 0, capsys.readouterr().err
    assert load_bundle(path).ontology.task_names == names
