"""The CLI shell: help, version, info, one-line errors and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from niclip_ray import __version__
from niclip_ray.cli.main import run

BIN = Path(sys.executable).parent / "niclip-ray"


def test_help_lists_the_command_groups(capsys):
    assert run(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("corpus", "info", "--address", "--cluster", "--num-cpus", "--quiet", "--verbose", "--version"):
        assert word in text


def test_version(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"niclip-ray {__version__}"


def test_info_reports_versions_mode_atlases_and_models(capsys, monkeypatch, tmp_path):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the session fixture may be running
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cache = tmp_path / "difumo_atlases" / "64" / "2mm"
    cache.mkdir(parents=True)
    (cache / "maps.nii.gz").write_bytes(b"")
    (tmp_path / "difumo_atlases" / "README.md").write_text("niclip-ray stand-in")
    assert run(["--num-cpus", "2", "info", "--atlas-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "ray" in text and "2.60.0" in text
    assert "embedded local Ray (2 CPUs" in text
    assert "difumo64-2mm-standin" in text
    assert "smollm2-135m" in text or "none" in text


def test_info_lists_the_cached_standin(capsys, monkeypatch, tmp_path):
    from niclip_ray.atlas.difumo import default_standin_dir

    monkeypatch.setenv("NICLIP_ATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NILEARN_DATA", str(tmp_path / "nilearn"))
    root = default_standin_dir(0) / "difumo_atlases"
    (root / "128" / "2mm").mkdir(parents=True)
    (root / "128" / "2mm" / "maps.nii.gz").write_bytes(b"")
    (root / "README.md").write_text("niclip-ray stand-in\nseed: 0\n")
    assert run(["info"]) == 0
    printed = capsys.readouterr().out
    assert "difumo128-2mm-standin-seed0" in printed and "niclip-ray atlas fetch" in printed


def test_info_with_cluster_says_job_submission(capsys, tmp_path):
    assert run(["--cluster", str(tmp_path / "cluster.yaml"), "info"]) == 0
    assert "submit as a Ray Job" in capsys.readouterr().out


def test_missing_source_is_one_line_and_exit_1(capsys, tmp_path):
    code = run(["corpus", "ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip().splitlines() == [f"error: corpus source not found: {tmp_path / 'nope'}"]
    assert "Traceback" not in captured.err


def test_verbose_shows_the_traceback(capsys, tmp_path):
    assert run(["--verbose", "corpus", "info", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_usage_error_exit_code(capsys):
    assert run(["corpus", "ingest"]) == 2
    assert run(["no-such-command"]) == 2


def test_corpus_ingest_and_info(capsys, tmp_path):
    assert run(["corpus", "ingest", "nimare:neurosynth_laird", "--out", str(tmp_path)]) == 0
    assert "17 studies" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "studies.parquet")) == 17
    assert run(["corpus", "info", str(tmp_path)]) == 0
    assert "1117" in capsys.readouterr().out


def test_corpus_warnings_name_the_study(capsys, tmp_path):
    src = tmp_path / "d.json"
    peak = {"x": [1], "y": [2], "z": [3]}
    src.write_text(json.dumps({"s1": {"contrasts": {"1": {"coords": peak, "text": {}}}},
                               "s2": {"contrasts": {"1": {"coords": peak, "text": {"abstract": "A working memory study."}}}}}))
    assert run(["corpus", "ingest", str(src), "--out", str(tmp_path / "o")]) == 0
    assert "study s1: no text" in capsys.readouterr().err


@pytest.mark.skipif(not BIN.exists(), reason="console script not installed")
def test_console_script_exit_codes(tmp_path):
    ok = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and __version__ in ok.stdout
    bad = subprocess.run([str(BIN), "corpus", "info", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_parameter_errors_show_the_flag_a_user_types():
    from niclip_ray.cli.options import flag_for, user_message
    from niclip_ray.errors import ParameterError

    assert flag_for("text_features") == "--text-features"
    assert flag_for("n_folds") == "--folds"
    assert user_message(ParameterError("shard_size", "must be at least 1, got 0")) == "--shard-size must be at least 1, got 0"
    assert str(ParameterError("shard_size", "must be at least 1, got 0")) == "shard_size must be at least 1, got 0"


def test_the_cli_starts_without_the_heavy_libraries():
    code = "import sys, niclip_ray.cli.main; print(sorted({'sklearn', 'nimare', 'ray', 'torch'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "[]"


def test_baseline_names_of_the_cli_are_those_of_the_library():
    from niclip_ray.baselines.run import BASELINES
    from niclip_ray.cli.baselines import METHODS

    assert tuple(BASELINES) == METHODS
