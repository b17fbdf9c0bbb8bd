"""Resume never serves stale results: shards are fingerprinted by their inputs' content.

Today's fingerprint hashed ids and parameters only: a re-ingested corpus with new peaks, or
a map file overwritten in place, was "already done". Also here: the refusal names the
parameter that differs, the manifest is written atomically and a damaged one says how to
recover, and a second run into the same directory stops on the lock.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from niclip_ray.atomic import write_json
from niclip_ray.errors import InputError
from niclip_ray.pipelines import images
from niclip_ray.pipelines.shards import (
    MANIFEST_NAME,
    check_stage_dir,
    plan_shards,
    run_stage,
    shard_path,
    stage_lock,
)
from niclip_ray.tables import read_parts


def make_double():
    """Process factory: doubles ``v``."""

    def process(items):
        return pa.table({"id": [i["id"] for i in items], "out": [2 * i["v"] for i in items],
                         "error": [""] * len(items)})

    return process


ITEMS = [{"id": f"s{i:02d}", "v": float(i)} for i in range(9)]


def test_changed_content_under_the_same_id_is_recomputed_and_named(ray_local, tmp_path):
    first = run_stage("toy", ITEMS, key="id", out_dir=tmp_path, factory=make_double, params={}, shard_size=3)
    assert (first.n_shards, first.n_skipped, first.changed) == (3, 0, {})
    kept = {i: shard_path(tmp_path, i).stat().st_mtime_ns for i in (0, 2)}

    changed = [dict(item, v=100.0) if item["id"] == "s04" else item for item in ITEMS]
    again = run_stage("toy", changed, key="id", out_dir=tmp_path, factory=make_double, params={}, shard_size=3)
    assert (again.n_shards, again.n_skipped, again.changed) == (3, 2, {1: ["s04"]})
    assert "recomputed 1 shards whose inputs changed (s04)" in again.line()
    assert {i: shard_path(tmp_path, i).stat().st_mtime_ns for i in (0, 2)} == kept
    table = read_parts(tmp_path).to_pandas()
    assert table["out"].tolist() == [0, 2, 4, 6, 200, 10, 12, 14, 16]  # was 8 for s04: stale today

    same = run_stage("toy", changed, key="id", out_dir=tmp_path, factory=make_double, params={}, shard_size=3)
    assert (same.n_skipped, same.changed) == (3, {})


def test_fewer_items_drop_the_parts_beyond_them(tmp_path):
    check_stage_dir(tmp_path, "toy", plan_shards(ITEMS, "id", 3), "id", {})
    for i in range(3):
        shard_path(tmp_path, i).write_bytes(b"x")
    changed = check_stage_dir(tmp_path, "toy", plan_shards(ITEMS[:5], "id", 3), "id", {})
    assert changed == {1: ["s03", "s04"]}  # shard 1 lost s05
    assert sorted(p.name for p in tmp_path.glob("part-*")) == ["part-00000.parquet"]


def test_re_ingested_peaks_change_the_image_shard(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pd.DataFrame({"study_id": ["a", "b"], "title": ["A", "B"]}).to_parquet(corpus / "studies.parquet")

    def peaks(x_of_b):
        frame = pd.DataFrame({"study_id": ["a", "b"], "analysis_id": ["a-1", "b-1"],
                              "x": np.float32([10, x_of_b]), "y": np.float32([0, 0]), "z": np.float32([0, 0]),
                              "space_in": "MNI"})
        frame.to_parquet(corpus / "coordinates.parquet")
        return plan_shards(images.study_items(corpus), "study_id", 1)

    out = tmp_path / "images"
    check_stage_dir(out, "images", peaks(20.0), "study_id", {})
    for i in range(2):
        shard_path(out, i).write_bytes(b"x")
    assert check_stage_dir(out, "images", peaks(-30.0), "study_id", {}) == {1: ["b"]}
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet"]


def test_refusal_names_the_parameter_that_differs(tmp_path):
    shards = plan_shards(ITEMS, "id", 3)
    check_stage_dir(tmp_path, "toy", shards, "id", {"atlas_id": "difumo64", "radius": 10.0})
    with pytest.raises(InputError) as caught:
        check_stage_dir(tmp_path, "toy", shards, "id", {"atlas_id": "difumo64", "radius": 8.0})
    assert "(radius: was 10.0, now 8.0)" in str(caught.value) and "atlas_id" not in str(caught.value)


@pytest.mark.parametrize("content", ["{\"stage\": \"toy\", \"para", "", "[1, 2]", "\xff\xfe"])
def test_a_damaged_manifest_names_the_file_and_the_way_out(tmp_path, content):
    (tmp_path / MANIFEST_NAME).write_bytes(content.encode("latin-1"))
    with pytest.raises(InputError) as caught:
        check_stage_dir(tmp_path, "toy", plan_shards(ITEMS, "id", 3), "id", {})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / MANIFEST_NAME} is damaged") and "delete it and rerun" in message


def test_the_manifest_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / MANIFEST_NAME
    write_json(path, {"stage": "toy", "params": {}})

    def crash(*args):
        raise OSError("killed while writing")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_json(path, {"stage": "other", "params": {"p": 1}})
    assert json.loads(path.read_text()) == {"stage": "toy", "params": {}}  # the old one, whole


HOLD_LOCK = """
import sys, time
from pathlib import Path
from niclip_ray.pipelines.shards import stage_lock
with stage_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_the_same_directory_stops_on_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as caught, stage_lock(tmp_path):
            pass
        assert f"is being written by another run (pid {holder.pid} on " in str(caught.value)
        assert "wait for it to finish" in str(caught.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # as a crashed run: the system drops its lock
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with stage_lock(tmp_path):
                break
        except InputError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
