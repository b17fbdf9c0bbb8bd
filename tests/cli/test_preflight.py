"""Errors a user makes most often fail before torch, nilearn or Ray are imported, and leave no output.

Each case runs the CLI in a fresh interpreter and reports the exit code, the last line on
stderr and which heavy libraries the command imported before it stopped.
"""

import json
import subprocess
import sys

import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle

HEAVY = ("torch", "nilearn", "ray", "pandas", "pyarrow", "scipy")
PROBE = """
import contextlib, io, json, sys
from niclip_ray.cli.main import run
stderr = io.StringIO()
with contextlib.redirect_stderr(stderr):
    try:
        code = run(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "err": stderr.getvalue().strip().splitlines()[-1:],
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def cli(*args) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


def test_help_imports_nothing_heavy():
    result = cli("--help")
    assert result["code"] == 0 and result["heavy"] == []


@pytest.mark.parametrize("case", ["missing map", "no bundle", "not a bundle", "stand-in", "no atlas dir",
                                  "real atlas missing"])
def test_each_early_error_names_its_input_imports_nothing_heavy_and_writes_nothing(case, bundle, tmp_path):
    path, atlas = bundle
    motor = load_sample_motor_activation_image()
    real = tmp_path / "real-bundle"
    real.mkdir()
    (real / "config.json").write_text(json.dumps({"atlas_id": "difumo512-2mm", "atlas_dim": 512}))
    (real / "manifest.json").write_text("{}")
    empty = tmp_path / "empty-nilearn"
    empty.mkdir()
    args, words = {
        "missing map": ([tmp_path / "typo.nii.gz", "--model", path, "--standin"],
                        f"no such file or directory: map {tmp_path / 'typo.nii.gz'}"),
        "no bundle": ([motor, "--model", tmp_path / "nope"], f"model bundle {tmp_path / 'nope'} does not exist"),
        "not a bundle": ([motor, "--model", tmp_path], "lacks config.json, manifest.json"),
        "stand-in": ([motor, "--model", path], "pass --standin to decode with it anyway"),
        "no atlas dir": ([motor, "--model", path, "--standin", "--atlas-dir", tmp_path / "nowhere"],
                         f"--atlas-dir {tmp_path / 'nowhere'} does not exist"),
        "real atlas missing": ([motor, "--model", real, "--atlas-dir", empty],
                               "--atlas-dir holds no difumo512-2mm atlas, which the bundle was trained on"),
    }[case]
    out = tmp_path / "out"
    result = cli("decode", *args, "--out", out)
    assert result["code"] == 1
    assert words in result["err"][0], result
    assert result["heavy"] == []
    assert not out.exists()
