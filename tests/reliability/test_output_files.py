"""Output files are written under a temporary name and renamed; a full or read-only disk names the file.

Today: with the disk full, ``decode`` prints "4 maps ok", then ``unexpected OSError:
[Errno 28] No space left on device`` naming no file, and leaves a 0-byte CSV under its
final name; ``embed --out FILE`` says "File exists" only.
"""

import errno
import os

import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.atomic import make_dir, write_json
from niclip_ray.cli.main import run
from niclip_ray.decoding.export import write_csvs
from niclip_ray.errors import OutputError, ParameterError
from niclip_ray.pipelines.shards import run_stage

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def disk_full_after(n_files, monkeypatch):
    """Make ``DataFrame.to_csv`` write ``n_files`` files, then start a file and stop on a full disk."""
    real = pd.DataFrame.to_csv
    calls = []

    def to_csv(frame, path, *args, **kwargs):
        calls.append(path)
        if len(calls) <= n_files:
            return real(frame, path, *args, **kwargs)
        with open(path, "w") as handle:  # a write cut short: part of the file, then ENOSPC
            handle.write("term,")
        raise FULL

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


def rows(map_ids):
    return pd.DataFrame([{"map_id": m, "level": "task", "rank": 1, "term": "t", "prob": 0.5, "similarity": 0.1,
                          "likelihood": 0.2, "prior": 0.3, "bayes_factor": 1.0, "error": ""} for m in map_ids])


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    (tmp_path / "b_task_predictions.csv").write_text("earlier run\n")
    disk_full_after(1, monkeypatch)
    with pytest.raises(OutputError) as caught:  # today: a bare OSError naming no file
        write_csvs(rows(["a", "b"]), tmp_path)
    assert str(caught.value) == f"cannot write {tmp_path / 'b_task_predictions.csv'}: No space left on device"
    assert (tmp_path / "b_task_predictions.csv").read_text() == "earlier run\n"  # today: "term,"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_task_predictions.csv", "b_task_predictions.csv"]


def test_a_read_only_disk_names_the_file(tmp_path, monkeypatch):
    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'x.json'}: Read-only file system"):
        write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_other_os_errors_pass_through(tmp_path, monkeypatch):
    def denied(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(OSError) as caught:
        write_json(tmp_path / "x.json", {})
    assert not isinstance(caught.value, OutputError)


def test_decode_on_a_full_disk_exits_1_with_one_line_and_no_success(tmp_path, monkeypatch, capsys):
    bundle = toy_bundle(tmp_path / "bundle", tmp_path / "atlas")
    maps = [str(tmp_path / f"{name}.nii.gz") for name in ("a", "b")]
    for path in maps:
        os.symlink(load_sample_motor_activation_image(), path)
    disk_full_after(1, monkeypatch)
    code = run(["decode", *maps, "--model", str(bundle), "--atlas-dir", str(tmp_path / "atlas"), "--tasks-only",
                "--topk", "2", "--standin", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert code == 1
    assert "maps ok" not in printed.out  # today: "decode: 2 maps ok, ..." first
    csv = tmp_path / "out" / "csv"
    assert printed.err.strip().splitlines()[-1] == (
        f"error: cannot write {csv / 'b_task_predictions.csv'}: No space left on device")  # today: unexpected OSError
    assert sorted(p.name for p in csv.iterdir()) == ["a_task_predictions.csv"]  # today: a 0-byte b's CSV too


def test_a_file_given_as_out_is_named(tmp_path, capsys):
    given = tmp_path / "features"
    given.write_text("")
    assert run(["embed", "--corpus", str(tmp_path / "corpus"), "--out", str(given)]) == 1
    assert capsys.readouterr().err.strip() == f"error: --out must be a directory, but {given} is a file"
    with pytest.raises(ParameterError, match=f"must be a directory, but {given} is a file"):
        make_dir(given / "images")
    with pytest.raises(ParameterError, match=f"must be a directory, but {given} is a file"):
        run_stage("toy", [{"k": 1}], key="k", out_dir=given, factory=None, params={}, shard_size=1,
                  in_process=True)
