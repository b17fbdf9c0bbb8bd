"""``niclip-ray atlas`` and ``niclip-ray embed images``: outputs and exit codes."""

import numpy as np
import pytest

from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.corpus import ingest
from niclip_ray.tables import read_parts, tensor_to_numpy


@pytest.fixture(scope="module")
def atlas_dir():
    build_standin(default_standin_dir(0), 64, seed=0)
    return default_standin_dir(0)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    corpus, _ = ingest("nimare:nback_vs_flanker", tmp_path_factory.mktemp("full"))
    out = tmp_path_factory.mktemp("corpus")
    keep = corpus.studies["study_id"].iloc[:6]
    corpus.studies[corpus.studies["study_id"].isin(keep)].to_parquet(out / "studies.parquet", index=False)
    coords = corpus.coordinates
    coords[coords["study_id"].isin(keep)].to_parquet(out / "coordinates.parquet", index=False)
    return out


def test_atlas_info_lists_the_standin(atlas_dir, capsys):
    assert run(["atlas", "info", "--atlas-dir", str(atlas_dir)]) == 0
    printed = capsys.readouterr()
    assert "difumo64-2mm-standin-seed0" in printed.out
    assert "niclip-ray atlas fetch --dim 512" in printed.err and "fetch_atlas_difumo(dimension=512" in printed.err


def test_atlas_fetch_without_network_is_one_line_error(tmp_path, capsys, monkeypatch):
    import nilearn.datasets

    def offline(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(nilearn.datasets, "fetch_atlas_difumo", offline)
    assert run(["atlas", "fetch", "--dim", "64", "--out", str(tmp_path)]) == 1
    assert "could not download DiFuMo 64" in capsys.readouterr().err


def test_atlas_info_errors(tmp_path, capsys):
    assert run(["atlas", "info", "--atlas-dir", str(tmp_path / "absent")]) == 1
    assert "absent does not exist" in capsys.readouterr().err
    assert run(["atlas", "info", "--atlas-dir", str(tmp_path)]) == 0
    assert "no DiFuMo atlas" in capsys.readouterr().out


def test_build_standin_command(tmp_path, capsys):
    assert run(["atlas", "build-standin", "--dim", "64", "--out", str(tmp_path), "--seed", "2"]) == 0
    assert (tmp_path / "difumo_atlases" / "64" / "2mm" / "maps.nii.gz").is_file()
    assert "NOT the real atlas" in capsys.readouterr().out
    assert run(["atlas", "build-standin", "--dim", "64", "--out", str(tmp_path), "--seed", "3"]) == 1
    assert "seed 2" in capsys.readouterr().err
    assert run(["atlas", "build-standin", "--dim", "65", "--out", str(tmp_path)]) == 1
    assert "dimension must be one of" in capsys.readouterr().err


def test_embed_images_writes_features(ray_local, small_corpus, atlas_dir, tmp_path, capsys):
    out = tmp_path / "images"
    argv = ["embed", "images", "--corpus", str(small_corpus), "--out", str(out)]
    argv += ["--atlas-dir", str(atlas_dir), "--dim", "64", "--shard-size", "4", "--num-actors", "1", "--standin"]
    assert run(argv) == 0
    printed = capsys.readouterr()
    assert "images: 6 ok, 0 failed rows in 2 shards" in printed.out
    assert "stand-in atlas difumo64-2mm-standin-seed0" in printed.err
    table = read_parts(out)
    assert table.num_rows == 6 and tensor_to_numpy(table["embedding"]).shape == (6, 64)
    assert np.isfinite(tensor_to_numpy(table["embedding"])).all()
    assert run(argv) == 0
    assert "(2 already done)" in capsys.readouterr().out


def test_embed_images_errors(ray_local, small_corpus, tmp_path, capsys):
    assert run(["embed", "images", "--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--standin"]) == 1
    assert "not a corpus directory" in capsys.readouterr().err
    argv = ["embed", "images", "--corpus", str(small_corpus), "--out", str(tmp_path / "o"), "--dim", "64"]
    assert run(argv + ["--atlas-dir", str(tmp_path), "--no-standin"]) == 1
    assert "no DiFuMo 64 atlas" in capsys.readouterr().err
    assert run(argv + ["--shard-size", "0"]) != 0
