"""``niclip-ray train`` end to end on tiny feature tables: folds, bundle, decoding.

Resume is covered by tests/training/test_ray_train.py (same run directory, more epochs).
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from niclip_ray.cli.main import run
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.model import CLIP
from niclip_ray.model.bundle import load_bundle
from niclip_ray.model.vocabulary import make_vocabulary, write_vocabulary
from niclip_ray.tables import tensor_array
from niclip_ray.training.data import load_pairs
from niclip_ray.training.loop import evaluate

pytestmark = pytest.mark.timeout(300)


def write_tables(root, n=36, image_dim=8, text_dim=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, image_dim))
    texts = images @ rng.standard_normal((image_dim, text_dim)) + 0.3 * rng.standard_normal((n, text_dim))
    ids = [f"pmid{i:03d}" for i in range(n)]
    (root / "images").mkdir(parents=True)
    (root / "text").mkdir()
    failed = np.arange(n) == 5  # one failed image row
    pq.write_table(pa.table({"study_id": ids, "embedding": tensor_array(images, valid=~failed),
                             "atlas_id": ["toy-8"] * n,
                             "error": [("no peaks" if f else None) for f in failed]}),
                   root / "images" / "part-00000.parquet")
    extra = ["pmid999"]  # text only
    pq.write_table(pa.table({"study_id": ids + extra, "section": ["body"] * (n + 1),
                             "embedding": tensor_array(np.vstack([texts, rng.standard_normal((1, text_dim))])),
                             "model_id": ["tiny-llm"] * (n + 1), "error": pa.nulls(n + 1, pa.string())}),
                   root / "text" / "part-00000.parquet")
    vocab = make_vocabulary([f"task {i}" for i in range(4)], {"combined": texts[:4]}, np.full(4, 0.25))
    write_vocabulary(vocab, root / "vocabulary.parquet")
    return root / "images", root / "text", root / "vocabulary.parquet", images


def test_train_writes_a_bundle_that_decodes(ray_local, tmp_path, capsys):
    img_dir, txt_dir, vocab, images = write_tables(tmp_path)
    out = tmp_path / "run"

    def args(epochs):
        return ["train", "--images", str(img_dir), "--text", str(txt_dir), "--out", str(out), "--folds", "2",
                "--epochs", str(epochs), "--batch-size", "8", "--dropout", "0.1", "--seed", "7",
                "--vocabulary", str(vocab)]

    assert run(args(2)) == 0
    captured = capsys.readouterr()
    assert "image features only" not in captured.err
    assert "2 studies have text features only: pmid005, pmid999" in captured.err
    assert "test R@10" in captured.out and "bundle:" in captured.out

    metrics = json.loads((out / "metrics.json").read_text())["folds"]
    assert [m["fold"] for m in metrics] == [0, 1] and all(m["epochs_run"] == 2 for m in metrics)
    for m in metrics:  # recall as a fraction, like the evaluation's, not a percentage
        assert f"{m['test_recall@10']:.3f}" in captured.out and f"{100 * m['test_recall@10']:.2f}" not in captured.out
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["study_ids"]) == 35 and "pmid005" not in splits["study_ids"]
    tests = sorted(i for f in splits["folds"] for i in f["test"])
    assert tests == list(range(35))

    bundle = load_bundle(out / "bundle")
    training = bundle.config["training"]
    assert (training["epochs"], training["batch_size"], training["seed"]) == (2, 8, 7)
    chosen = training["selected_fold"]
    assert chosen == min(metrics, key=lambda m: m["val_loss"])["fold"]
    assert set(training["split"]["test"]) == {splits["study_ids"][i] for i in splits["folds"][chosen]["test"]}
    assert bundle.config["text_model_id"] == "tiny-llm" and bundle.config["atlas_id"] == "toy-8"
    model = CLIP.from_state_dict(bundle.state_dict).eval()
    assert model.text_dim == 12 and model.image_dim == 8
    # the bundle's weights reproduce the selected fold's reported test scores
    pairs = load_pairs(img_dir, txt_dir)
    test = splits["folds"][chosen]["test"]
    scores = evaluate(model, torch.as_tensor(pairs.images[test]), torch.as_tensor(pairs.texts[test]), 8)
    assert scores["mix&match"] == pytest.approx(metrics[chosen]["test_mix&match"])
    assert scores["loss"] == pytest.approx(metrics[chosen]["test_loss"], rel=1e-5)

    decoded = Decoder(bundle, topk=4).decode_features(images[:2], ["a", "b"])
    assert set(decoded["map_id"]) == {"a", "b"}
    np.testing.assert_allclose(decoded.groupby("map_id")["prob"].sum(), 1.0, rtol=1e-6)


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    img_dir, txt_dir, _, _ = write_tables(tmp_path)
    code = run(["train", "--images", str(img_dir), "--text", str(txt_dir), "--out", str(tmp_path / "r"),
                "--section", "abstract"])
    assert code == 1
    assert "no section 'abstract'" in capsys.readouterr().err
    code = run(["train", "--images", str(tmp_path / "nowhere"), "--text", str(txt_dir), "--out", str(tmp_path / "r")])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err
    code = run(["train", "--images", str(img_dir), "--text", str(txt_dir), "--out", str(tmp_path / "r"),
                "--folds", "20"])
    assert code == 1
    assert "too few" in capsys.readouterr().err
