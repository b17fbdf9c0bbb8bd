"""Model bundle: round trip, checksum tamper detection, shape errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from niclip_ray._testing import toy_state_dict, toy_vocabulary
from niclip_ray.errors import InputError
from niclip_ray.model.bundle import (
    attach_vocabulary,
    load_bundle,
    save_bundle,
)
from niclip_ray.model.vocabulary import embedding_matrix
from niclip_ray.ontology.core import Ontology, default_domains

NAMES = ["n-back task", "flanker task", "stroop task"]


def small_ontology(names=NAMES) -> Ontology:
    tasks = pd.DataFrame({"task_id": [f"t{i}" for i in range(len(names))], "name": names, "definition": "d"})
    concepts = pd.DataFrame(
        {"concept_id": ["c0", "c1"], "name": ["working memory", "conflict"], "definition": "d",
         "domain_id": ["ctp_C5", "ctp_C4"]}
    )
    links = pd.DataFrame({"task_id": ["t0", "t1", "t2"], "concept_id": ["c0", "c1", "c1"]})
    return Ontology(tasks, concepts, default_domains(), links, {"source": "test"})


def test_round_trip(tmp_path):
    state = toy_state_dict(text_dim=16, dim=8, seed=1)
    vocab = toy_vocabulary(NAMES, text_dim=16)
    config = {"dropout": 0.5, "logit_scale": 20.0, "atlas_id": "difumo8-test", "atlas_dim": 8,
              "training": {"lr": 5e-4}, "metrics": {"recall@10": np.float32(0.3)}}
    path = save_bundle(tmp_path / "b", state, config, vocab, small_ontology())
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "manifest.json", "model.safetensors", "ontology", "vocabulary.parquet"]
    bundle = load_bundle(path)
    assert set(bundle.state_dict) == set(state)
    for key, value in state.items():
        assert torch.equal(bundle.state_dict[key], value)
    assert bundle.config["text_dim"] == 16 and bundle.config["embed_dim"] == 8
    assert bundle.config["n_image_blocks"] == 3 and bundle.config["n_text_blocks"] == 3
    assert bundle.config["training"] == {"lr": 5e-4}
    assert bundle.logit_scale == 20.0
    assert bundle.vocabulary["name"].tolist() == NAMES
    np.testing.assert_array_equal(embedding_matrix(bundle.vocabulary, "combined"), embedding_matrix(vocab, "combined"))
    np.testing.assert_allclose(bundle.vocabulary["prior"], vocab["prior"])
    assert bundle.ontology.task_names == NAMES
    assert bundle.ontology.task_concept_matrix.toarray().tolist() == [[1, 0], [0, 1], [0, 1]]


def test_learned_scale_when_config_has_none(tmp_path):
    bundle = load_bundle(save_bundle(tmp_path / "b", toy_state_dict(16, 8, logit_scale=7.5), {"logit_scale": None}))
    assert bundle.logit_scale == 7.5
    with pytest.raises(InputError, match="no vocabulary; attach one"):
        bundle.require_vocabulary()


def test_tampered_file_is_detected(tmp_path):
    path = save_bundle(tmp_path / "b", toy_state_dict(16, 8), {}, toy_vocabulary(NAMES, 16))
    config = json.loads((path / "config.json").read_text())
    config["logit_scale"] = 99.0
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"checksum mismatch for \['config.json'\]"):
        load_bundle(path)


def test_missing_and_extra_files_are_detected(tmp_path):
    path = save_bundle(tmp_path / "b", toy_state_dict(16, 8), {}, toy_vocabulary(NAMES, 16))
    (path / "vocabulary.parquet").unlink()
    with pytest.raises(InputError, match="missing \\['vocabulary.parquet'\\]"):
        load_bundle(path)
    other = save_bundle(tmp_path / "c", toy_state_dict(16, 8), {})
    (other / "evil.pth").write_bytes(b"x")
    with pytest.raises(InputError, match="unlisted \\['evil.pth'\\]"):
        load_bundle(other)


def test_wrong_shapes_are_errors(tmp_path):
    with pytest.raises(InputError, match="text head takes 16-d"):
        save_bundle(tmp_path / "b", toy_state_dict(16, 8), {}, toy_vocabulary(NAMES, text_dim=12))
    with pytest.raises(InputError, match="atlas_dim=512"):
        save_bundle(tmp_path / "b", toy_state_dict(16, 8), {"atlas_dim": 512})
    state = toy_state_dict(16, 8)
    del state["image_model.model.0.fc.weight"]
    with pytest.raises(InputError, match="lack the reference keys"):
        save_bundle(tmp_path / "b", state, {})
    assert not (tmp_path / "b").exists()


def test_vocabulary_order_must_match_ontology(tmp_path):
    swapped = toy_vocabulary([NAMES[1], NAMES[0], NAMES[2]], text_dim=16)
    with pytest.raises(InputError, match="another order: position 0 is 'flanker task'"):
        save_bundle(tmp_path / "b", toy_state_dict(16, 8), {}, swapped, small_ontology())


def test_attach_vocabulary_later(tmp_path):
    mask = tmp_path / "mask.nii.gz"
    mask.write_bytes(b"not really a mask but copied verbatim")
    path = save_bundle(tmp_path / "b", toy_state_dict(16, 8), {"text_model_id": "toy"}, mask_file=mask)
    bundle = attach_vocabulary(path, toy_vocabulary(NAMES, 16), small_ontology())
    assert bundle.vocabulary["name"].tolist() == NAMES
    assert bundle.ontology is not None and bundle.config["text_model_id"] == "toy"
    assert bundle.mask_path.read_bytes() == mask.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_overwrite_a_non_bundle_directory(tmp_path):
    (tmp_path / "data.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a model bundle"):
        save_bundle(tmp_path, toy_state_dict(16, 8), {})


def test_ddp_weights_are_saved_in_the_reference_layout(tmp_path):
    from safetensors.torch import load_file

    state = toy_state_dict(16, 8, logit_scale=4.0)
    wrapped = {f"module.{k}": v for k, v in state.items()} | {"module.logit_scale": torch.tensor([4.0])}
    path = save_bundle(tmp_path / "b", wrapped, {})
    stored = load_file(str(path / "model.safetensors"))
    assert sorted(stored) == sorted(state) and stored["logit_scale"].shape == ()
    assert load_bundle(path).logit_scale == 4.0
