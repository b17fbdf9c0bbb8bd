"""The Python API: ``from niclip_ray import Decoder``, the README example run verbatim, and
``Decoder.from_reference`` against ``niclip-ray predict`` on the original's file formats."""

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray import Decoder
from niclip_ray._testing import toy_atlas, toy_bundle, toy_state_dict
from niclip_ray.cli.main import run
from niclip_ray.decoding.schema import DECODE_SCHEMA
from niclip_ray.errors import InputError, ParameterError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first python block of the README's "Python API" section."""
    text = README.read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return toy_bundle(root / "work" / "demo" / "train" / "bundle", root / "atlas"), root


def test_readme_example_runs_verbatim(bundle_dir, monkeypatch, capsys):
    _, root = bundle_dir
    monkeypatch.chdir(root)
    monkeypatch.setenv("NILEARN_DATA", str(root / "atlas"))  # where the example's atlas lookup finds the toy atlas
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    decoder = Decoder.from_bundle("work/demo/train/bundle", topk=5)
    table = decoder.transform(load_sample_motor_activation_image())
    top = table[table["level"] == "task"].iloc[0]
    assert top["term"] in out and "bundle_sha256" in out and decoder.describe()["bundle_sha256"] in out


def test_transform_takes_a_path_an_image_or_a_list(bundle_dir, tmp_path):
    path, root = bundle_dir
    decoder = Decoder.from_bundle(path, atlas_dir=root / "atlas", topk=3)
    motor = load_sample_motor_activation_image()
    by_path = decoder.transform(motor)
    assert by_path.columns.tolist() == DECODE_SCHEMA.names and set(by_path["map_id"]) == {"image_10426"}
    assert set(by_path["source_path"]) == {str(Path(motor).absolute())} and by_path["error"].isna().all()
    by_image = decoder.transform(nib.load(motor))
    assert set(by_image["map_id"]) == {"map"} and by_image["source_path"].isna().all()
    np.testing.assert_allclose(by_image["prob"], by_path["prob"], rtol=1e-12)
    flipped = nib.Nifti1Image(-nib.load(motor).get_fdata(), nib.load(motor).affine)
    both = decoder.transform([motor, flipped])
    assert list(pd.unique(both["map_id"])) == ["image_10426", "map-1"]
    np.testing.assert_allclose(both[both["map_id"] == "map-1"]["prob"], decoder.transform(flipped)["prob"], rtol=1e-6)  # float32 batch vs single
    named = decoder.transform([nib.load(motor), flipped], names=["a", "b"])
    assert named.groupby("map_id").size().to_dict() == {"a": len(by_path), "b": len(by_path)}
    with pytest.raises(ParameterError, match="names needs one distinct id per image in memory"):
        decoder.transform([flipped, flipped], names=["a", "a"])
    with pytest.raises(InputError, match="given twice"):
        decoder.transform([motor, motor])  # the same file twice
    assert decoder.transform([]).empty


def test_describe_names_what_it_runs(bundle_dir):
    path, root = bundle_dir
    info = Decoder.from_bundle(path, atlas_dir=root / "atlas").describe()
    assert info["atlas_id"] == "toy-difumo64-8mm-standin-seed0" and info["atlas_standin"]
    assert info["logit_scale"] == 20.0 and info["prior"] in {"uniform", "vocabulary"}
    assert len(info["bundle_sha256"]) == 16 and info["n_terms"]["task"] > 0


def nimare_mask() -> Path:
    import importlib.util

    root = Path(list(importlib.util.find_spec("nimare").submodule_search_locations)[0])
    return root / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    """The original ``predict.py``'s inputs: weights ``.pth``, vocabulary ``.txt``, embeddings and prior ``.npy``."""
    root = tmp_path_factory.mktemp("reference")
    names = ["n-back task", "stroop task", "finger tapping task", "go/no-go task", "rest"]
    rng = np.random.default_rng(5)
    torch.save(toy_state_dict(text_dim=16, dim=64, seed=2), root / "model.pth")
    (root / "vocabulary.txt").write_text("\n".join(names) + "\n")
    np.save(root / "vocabulary-combined.npy", rng.standard_normal((len(names), 16)).astype(np.float32))
    prior = rng.random(len(names)) + 0.2
    np.save(root / "prior.npy", prior / prior.sum())
    toy_atlas(root / "atlas", dim=64)
    return {"model": root / "model.pth", "vocabulary": root / "vocabulary.txt",
            "vocabulary_emb": root / "vocabulary-combined.npy", "vocabulary_prior": root / "prior.npy",
            "mask": nimare_mask(), "atlas": root / "atlas"}


def test_from_reference_equals_predict(reference_files, tmp_path, capsys):
    files = reference_files
    image = load_sample_motor_activation_image()
    out = tmp_path / "out"
    code = run(["predict", "--image", image, "--model", str(files["model"]), "--vocabulary", str(files["vocabulary"]),
                "--vocabulary_emb", str(files["vocabulary_emb"]), "--vocabulary_prior", str(files["vocabulary_prior"]),
                "--mask", str(files["mask"]), "--atlas-dir", str(files["atlas"]), "--allow-atlas-mismatch",
                "--topk", "3", "--logit-scale", "20", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    decoder = Decoder.from_reference(
        model=files["model"], vocabulary=files["vocabulary"], vocabulary_emb=files["vocabulary_emb"],
        vocabulary_prior=files["vocabulary_prior"], mask=files["mask"], logit_scale=20, topk=3,
        atlas_dir=files["atlas"], allow_atlas_mismatch=True,
    )
    mine = decoder.transform(image)
    assert set(mine["level"]) == {"task"}
    (csv,) = out.iterdir()
    theirs = pd.read_csv(csv)
    assert mine["term"].tolist() == theirs["pred"].tolist()
    for column, other in [("prob", "prob"), ("similarity", "similarity"), ("likelihood", "likelihood"),
                          ("prior", "prior_prob"), ("bayes_factor", "bayes_factor")]:
        np.testing.assert_allclose(mine[column], theirs[other], rtol=1e-6, err_msg=column)
    assert decoder.describe()["logit_scale"] == 20.0
