"""``niclip-ray decode`` without ``--model``: the bundle of ``model fetch-reference``, or a clear error."""

from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.main import run
from niclip_ray.home import default_bundle_dir


def test_without_a_default_bundle_the_error_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NICLIP_HOME", str(tmp_path / "home"))
    code = run(["decode", load_sample_motor_activation_image(), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "niclip-ray model fetch-reference" in err and "--model" in err and str(default_bundle_dir()) in err
    assert not (tmp_path / "o").exists()


def test_the_default_bundle_is_used_and_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NICLIP_HOME", str(tmp_path / "home"))
    path = toy_bundle(default_bundle_dir(), tmp_path / "atlas")
    code = run(["decode", load_sample_motor_activation_image(), "--atlas-dir", str(tmp_path / "atlas"), "--standin",
                "--out", str(tmp_path / "o"), "--topk", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    named = [line for line in captured.err.splitlines() if str(path) in line]
    assert named == [f"model: the default bundle {path} (from `niclip-ray model fetch-reference`)"]
    assert "image_10426: top predictions" in captured.out
