"""Importing the paper's loose files (created here in the reference formats) into a bundle."""

import numpy as np
import pytest
import torch

from niclip_ray._testing import toy_state_dict
from niclip_ray.errors import InputError
from niclip_ray.model.bundle import load_bundle, save_bundle
from niclip_ray.model.reference import bundle_from_reference
from niclip_ray.model.vocabulary import embedding_matrix
from niclip_ray.ontology import load_ontology


@pytest.fixture
def files(tmp_path):
    names = load_ontology("builtin").task_names
    rng = np.random.default_rng(0)
    torch.save(toy_state_dict(text_dim=24, dim=16), tmp_path / "model.pth")
    (tmp_path / "vocabulary-cogatlasred_task.txt").write_text("\n".join(names) + "\n\n")
    emb = rng.standard_normal((len(names), 24)).astype(np.float32)
    np.save(tmp_path / "vocabulary-cogatlasred_task-names_embedding-BrainGPT-7B-v0.2.npy", emb)
    prior = rng.random(len(names))
    np.save(tmp_path / "prior.npy", prior / prior.sum())
    return {"model": tmp_path / "model.pth", "vocabulary": tmp_path / "vocabulary-cogatlasred_task.txt",
            "vocabulary_emb": tmp_path / "vocabulary-cogatlasred_task-names_embedding-BrainGPT-7B-v0.2.npy",
            "vocabulary_prior": tmp_path / "prior.npy"}, names, emb, prior / prior.sum()


def test_import_and_save(files, tmp_path):
    paths, names, emb, prior = files
    bundle = bundle_from_reference(**paths, cognitiveatlas="builtin", logit_scale=20.0)
    assert bundle.config["vocabulary_embedding"] == "names"
    assert bundle.config["text_model_id"] == "BrainGPT-7B-v0.2"
    assert bundle.config["atlas_id"] == "difumo16-2mm" and bundle.config["text_dim"] == 24
    saved = load_bundle(save_bundle(tmp_path / "bundle", bundle.state_dict, bundle.config, bundle.vocabulary,
                                    bundle.ontology))
    assert saved.vocabulary["name"].tolist() == names
    assert saved.vocabulary["term_id"].iloc[0] == "niclip_tsk_n_back_task"
    np.testing.assert_array_equal(embedding_matrix(saved.vocabulary, "names"), emb)
    np.testing.assert_allclose(saved.vocabulary["prior"], prior)
    assert torch.equal(saved.state_dict["logit_scale"], torch.tensor(10.0)) and saved.logit_scale == 20.0


def test_prior_csv_fallback(files, tmp_path):
    paths, names, _, prior = files
    csv = tmp_path / "prior.csv"
    order = np.argsort(-prior)  # the reference's CSV is sorted by prior, not by vocabulary
    csv.write_text("name,prior\n" + "".join(f'"{names[i]}",{float(prior[i])!r}\n' for i in order))
    bundle = bundle_from_reference(**{**paths, "vocabulary_prior": csv})
    np.testing.assert_allclose(bundle.vocabulary["prior"], prior)


def test_inconsistent_files_are_clear_errors(files, tmp_path):
    paths, names, emb, _ = files
    np.save(tmp_path / "short.npy", emb[:-1])
    with pytest.raises(InputError, match=f"expected \\({len(names)}, D\\)"):
        bundle_from_reference(**{**paths, "vocabulary_emb": tmp_path / "short.npy"})
    np.save(tmp_path / "wide.npy", np.zeros((len(names), 30), np.float32))
    with pytest.raises(InputError, match="30-d but the text head takes 24-d"):
        bundle_from_reference(**{**paths, "vocabulary_emb": tmp_path / "wide.npy"})
    swapped = [names[1], names[0], *names[2:]]
    (tmp_path / "swapped.txt").write_text("\n".join(swapped))
    with pytest.raises(InputError, match="swapped.txt lists the ontology's tasks in another order"):
        bundle_from_reference(**{**paths, "vocabulary": tmp_path / "swapped.txt"}, cognitiveatlas="builtin")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="cannot read prior"):
        bundle_from_reference(**{**paths, "vocabulary_prior": tmp_path / "pickled.npy"})


def test_atlas_dir_must_hold_the_real_difumo(files, tmp_path):
    from niclip_ray._testing import toy_atlas
    from niclip_ray.errors import ConfigError

    paths, *_ = files
    toy_atlas(tmp_path / "atlas", dim=64)
    with pytest.raises(ConfigError, match="no DiFuMo 64 atlas"):
        bundle_from_reference(**paths, dim=64, atlas_dir=tmp_path / "atlas")
