"""A bundle's numbers are checked on load, ``--logit-scale`` on parse, and a NaN is never a result.

Before: a bundle whose ``logit_scale`` was NaN (or ``--logit-scale nan``, ``inf``, ``0``, ``-1``)
decoded with exit 0, "1 maps ok", every probability NaN and arbitrary ranks, and
``model info`` showed it without a word.
"""

import json
import math
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from nilearn.datasets import load_sample_motor_activation_image
from safetensors.torch import load_file, save_file

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.main import run
from niclip_ray.decoding.decoder import Decoder, nonfinite_maps
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.model.bundle import _write_manifest as write_manifest
from niclip_ray.model.bundle import load_bundle
from niclip_ray.pipelines import decode
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A good toy bundle, its atlas folder, and the motor sample map."""
    root = tmp_path_factory.mktemp("scale")
    path = toy_bundle(root / "bundle", root / "atlas")
    nib.save(nib.load(load_sample_motor_activation_image()), root / "motor.nii.gz")
    return path, root / "atlas", root / "motor.nii.gz"


def altered_copy(src, dst, config=None, weights=None):
    """A copy of bundle ``src`` with config entries and weights replaced, checksums rewritten to match."""
    shutil.copytree(src, dst)
    stored = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**stored, **(config or {})}))
    save_file({**load_file(dst / "model.safetensors"), **(weights or {})}, str(dst / "model.safetensors"))
    write_manifest(dst)
    return dst


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -20.0, 1e6, "20"])
def test_a_bundle_with_a_bad_logit_scale_is_refused_by_info_and_decode(toy, tmp_path, capsys, value):
    path, atlas, motor = toy
    bad = altered_copy(path, tmp_path / "bad", config={"logit_scale": value})
    problem = ("must be a number, got '20'" if isinstance(value, str)
               else f"must be a finite number above 0 and at most 1000, got {value:g}")
    assert run(["model", "info", str(bad)]) == 1
    assert f"error: bundle {bad}: config logit_scale {problem}" in capsys.readouterr().err
    argv = ["decode", str(motor), "--model", str(bad), "--out", str(tmp_path / "o"), "--atlas-dir", str(atlas),
            "--standin"]
    assert run(argv) == 1
    assert f"config logit_scale {problem}" in capsys.readouterr().err
    assert not (tmp_path / "o" / "decode").exists()


@pytest.mark.parametrize("config_scale", [None, 20.0])
def test_a_nan_learned_scale_is_refused(toy, tmp_path, config_scale):
    path, _, _ = toy
    bad = altered_copy(path, tmp_path / "bad", config={"logit_scale": config_scale},
                       weights={"logit_scale": torch.tensor(math.nan)})
    with pytest.raises(InputError, match=r"the weights \['logit_scale'\] hold NaN or infinite values"):
        load_bundle(bad)
    negative = altered_copy(path, tmp_path / "negative", config={"logit_scale": None},
                            weights={"logit_scale": torch.tensor(-3.0)})
    with pytest.raises(InputError, match=r"the learned logit_scale \(used for decoding: the config sets none\) "
                                         r"must be a finite number above 0 and at most 1000, got -3"):
        load_bundle(negative)


def test_a_nan_dropout_is_refused(toy, tmp_path):
    bad = altered_copy(toy[0], tmp_path / "bad", config={"dropout": math.nan})
    with pytest.raises(InputError, match=r"config dropout must be a number in \[0, 1\), got nan"):
        load_bundle(bad)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e9", "abc"])
@pytest.mark.parametrize("command", [["decode", "m.nii.gz", "--model", "b", "--out", "o"],
                                     ["model", "import-reference", "--model", "m.pth", "--vocabulary", "v.txt",
                                      "--vocabulary-emb", "e.npy", "--vocabulary-prior", "p.npy", "--out", "o"],
                                     ["predict", "--image", "m.nii.gz", "--model", "m.pth", "--vocabulary", "v.txt",
                                      "--vocabulary_emb", "e.npy", "--vocabulary_prior", "p.npy", "--mask", "k"]])
def test_logit_scale_option_is_checked_on_parse(command, value, capsys):
    assert run([*command, "--logit-scale", value]) == 2
    assert "--logit-scale" in capsys.readouterr().err


def test_the_decoder_refuses_a_bad_override(toy):
    path, atlas, _ = toy
    with pytest.raises(ParameterError, match="logit_scale must be a finite number above 0 and at most 1000, got nan"):
        Decoder(path, atlas_dir=atlas, logit_scale=math.nan)


def overflowing(toy, tmp_path):
    """A bundle with finite weights so large that the image head overflows to inf, then NaN."""
    path, _, _ = toy
    state = load_file(path / "model.safetensors")
    huge = torch.full_like(state["image_model.model.0.fc.weight"], 3e38)
    return altered_copy(path, tmp_path / "huge", weights={"image_model.model.0.fc.weight": huge})


def test_nan_scores_are_an_error_row_never_a_result(toy, tmp_path, capsys):
    _, atlas, motor = toy
    bundle = overflowing(toy, tmp_path)
    argv = ["decode", str(motor), "--model", str(bundle), "--out", str(tmp_path / "o"), "--atlas-dir", str(atlas),
            "--standin"]
    assert run(argv) == 1  # before: exit 0, "1 maps ok", every prob NaN
    assert "none of the 1 maps could be decoded" in capsys.readouterr().err
    rows = read_parts(tmp_path / "o" / "decode").to_pandas()
    assert len(rows) == 1 and rows["prob"].isna().all()
    assert rows["error"][0] == "map motor: decoding gave NaN or infinite scores, so it has no result (the bundle's " \
                               "weights overflow on this map)"
    decoder = Decoder(bundle, atlas_dir=atlas)
    with pytest.raises(InputError, match="map motor: decoding gave NaN"):
        decoder.transform(motor, errors="raise")
    assert decoder.transform(motor)["error"].tolist() == [rows["error"][0]]
    table = decode.decode_items(decoder, collect_maps([motor])).to_pandas()
    assert table["error"].notna().all()


def test_only_the_maps_with_nan_scores_are_dropped(toy, tmp_path):
    _, atlas, _ = toy
    decoder = Decoder(overflowing(toy, tmp_path), atlas_dir=atlas)
    betas = np.zeros((2, decoder.bundle.config["image_dim"]), np.float32)
    betas[0] = 1.0  # 64 inputs of 1/8 times 3e38 overflow float32; an all-zero map does not
    frame = decoder.decode_features(betas, ["big", "zero"])
    assert list(nonfinite_maps(frame)) == ["big"]
    assert np.isfinite(frame.loc[frame["map_id"] == "zero", "prob"]).all()
