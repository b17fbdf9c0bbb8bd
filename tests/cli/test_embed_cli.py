"""``niclip-ray embed`` without a sub-command: both feature stages into one directory."""

import re

import numpy as np
import pytest

from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.corpus import ingest
from niclip_ray.features.local_models import packaged_model_path
from niclip_ray.tables import read_parts, tensor_to_numpy


@pytest.mark.skipif(packaged_model_path("all-minilm-l6-v2") is None, reason="packaged MiniLM not installed")
def test_embed_runs_both_stages(ray_local, tmp_path, capsys):
    build_standin(default_standin_dir(0), 64, seed=0)
    ingest("nimare:neurosynth_laird", tmp_path / "corpus")
    argv = ["embed", "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "features"),
            "--model", "all-minilm-l6-v2", "--section", "abstract", "--dim", "64",
            "--atlas-dir", str(default_standin_dir(0)), "--standin"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "images: 17 ok, 0 failed" in out and "text: 17 ok, 0 failed" in out
    image_rows = read_parts(tmp_path / "features" / "images")
    text_rows = read_parts(tmp_path / "features" / "text")
    assert image_rows["study_id"].to_pylist() == text_rows["study_id"].to_pylist()
    assert tensor_to_numpy(image_rows["embedding"]).shape == (17, 64)
    vectors = tensor_to_numpy(text_rows["embedding"])
    assert vectors.shape == (17, 384) and np.isfinite(vectors).all()
    assert run(argv) == 0  # rerun: every shard already done, nothing recomputed
    rerun = capsys.readouterr().out
    shards = re.findall(r"in (\d+) shards \((\d+) already done\)", rerun)
    assert len(shards) == 2 and all(total == done for total, done in shards)


def test_embed_without_inputs_is_a_clear_error(capsys):
    assert run(["embed"]) == 1
    assert "embed needs --corpus and --out" in capsys.readouterr().err
