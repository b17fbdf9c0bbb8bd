"""``niclip-ray index build`` and ``search image|text`` end to end, and their clear errors."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.cli.main import run
from niclip_ray.features.study_maps import write_study_maps


@pytest.fixture(scope="module")
def index_dir(world, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-index") / "index"
    code = run(["index", "build", "--corpus", str(world.corpus), "--features", str(world.features),
                "--model", str(world.bundle), "--out", str(out), "--shard-size", "16"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def maps(world):
    return write_study_maps(world.corpus, world.split["test"][:2], world.root / "cli-maps")


def test_search_one_image_prints_and_writes(world, index_dir, maps, tmp_path, capsys):
    path = next(iter(maps.values()))
    code = run(["search", "image", str(path), "--index", str(index_dir), "--model", str(world.bundle),
                "--atlas-dir", str(world.atlas_dir), "--top-k", "5", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "nearest studies" in captured.out
    table = pd.read_csv(tmp_path / "matches.csv", dtype={"pmid": str})
    assert table.columns.tolist() == ["query", "rank", "study_id", "pmid", "doi", "title", "in_training", "score"]
    assert table["in_training"].tolist() == [sid in set(world.split["train"]) for sid in table["study_id"]]
    assert "stand-in atlas" in captured.err  # the same provenance note as decode's
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] and table["pmid"].str.startswith("3000").all()
    assert table["score"].is_monotonic_decreasing


def test_search_several_images_on_ray_with_a_bad_one(world, index_dir, maps, tmp_path, capsys):
    folder = tmp_path / "maps"
    folder.mkdir()
    for name, path in maps.items():
        (folder / f"{name}.nii.gz").write_bytes(path.read_bytes())
    mask = load_brain_mask()
    outside = (np.asarray(mask.dataobj) == 0).astype(np.float32)
    nib.save(nib.Nifti1Image(outside, mask.affine), folder / "outside.nii.gz")
    code = run(["search", "image", str(folder), "--index", str(index_dir), "--model", str(world.bundle),
                "--atlas-dir", str(world.atlas_dir), "--top-k", "3", "--against", "image", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "off the brain" in captured.err
    table = pd.read_csv(tmp_path / "o" / "matches.csv")
    assert sorted(table["query"].unique()) == sorted(maps)
    assert len(table) == 3 * len(maps)


def test_search_text_writes_map_png_and_table(world, index_dir, tmp_path, capsys):
    out = tmp_path / "wm.nii.gz"
    code = run(["search", "text", "working memory load", "--index", str(index_dir), "--model", str(world.bundle),
                "--atlas-dir", str(world.atlas_dir), "--out", str(out), "--top-k", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    img, mask = nib.load(out), load_brain_mask()
    assert img.shape == (91, 109, 91) and np.allclose(img.affine, mask.affine)
    assert (tmp_path / "wm.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "wm.csv")) == 4


@pytest.mark.parametrize("how, message", [
    ("empty", "error: QUERY is unusable: empty text"),
    ("latin1", "--query-file"),
    ("both", "not both"),
])
def test_search_text_errors(world, index_dir, tmp_path, capsys, how, message):
    args = ["search", "text", "--index", str(index_dir), "--model", str(world.bundle), "--out", str(tmp_path / "m.nii.gz")]
    if how == "empty":
        args.insert(2, "")
    elif how == "latin1":
        (tmp_path / "q.txt").write_bytes("m\xe9moire".encode("latin-1"))
        args += ["--query-file", str(tmp_path / "q.txt")]
    else:
        args += ["--query-file", str(tmp_path / "q.txt")]
        args.insert(2, "faces")
    code = run(args)
    captured = capsys.readouterr()
    assert code == 1 and message in captured.err
    if how == "latin1":
        assert "not valid UTF-8" in captured.err


def test_search_image_off_the_brain_is_a_clear_error(world, index_dir, tmp_path, capsys):
    mask = load_brain_mask()
    nib.save(nib.Nifti1Image((np.asarray(mask.dataobj) == 0).astype(np.float32), mask.affine), tmp_path / "off.nii.gz")
    code = run(["search", "image", str(tmp_path / "off.nii.gz"), "--index", str(index_dir), "--model",
                str(world.bundle), "--atlas-dir", str(world.atlas_dir), "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 1 and "off the brain" in captured.err and captured.err.count("\n") == 1


def test_index_build_refuses_a_mismatched_text_model(world, ray_local, tmp_path, capsys):
    other = world.bundle_with("bundle-cli-smollm", text_model_id="smollm2-135m", text_model_sha256=None)
    code = run(["index", "build", "--corpus", str(world.corpus), "--features", str(world.features),
                "--model", str(other), "--out", str(tmp_path / "i")])
    assert code == 1 and "trained on 'smollm2-135m'" in capsys.readouterr().err
