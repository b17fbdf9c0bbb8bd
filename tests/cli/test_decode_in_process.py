"""A few maps are decoded without Ray: the same files as the Ray stage, and Ray is never started."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.decode import IN_PROCESS_MAPS, decode_here
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.pipelines import decode as stage
from niclip_ray.runtime import RayOptions
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode-in-process")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


def _maps(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    return collect_maps([load_sample_motor_activation_image(), bad], [], None, False)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["map_id", "level", "rank"], na_position="last").reset_index(drop=True)


@pytest.mark.timeout(300)
def test_in_process_writes_what_the_ray_stage_writes(bundle, ray_local, tmp_path):
    path, atlas = bundle
    items = _maps(tmp_path)
    kwargs = dict(topk=3, atlas_dir=atlas, shard_size=1)
    here = stage.run(items, path, tmp_path / "here", in_process=True, **kwargs)
    on_ray = stage.run(items, path, tmp_path / "ray", **kwargs)
    assert (here.n_items, here.n_failed_items, here.n_shards) == (on_ray.n_items, on_ray.n_failed_items, 2)
    assert sorted(p.name for p in (tmp_path / "here").glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    pd.testing.assert_frame_equal(_sorted(read_parts(tmp_path / "here").to_pandas()),
                                  _sorted(read_parts(tmp_path / "ray").to_pandas()))
    failed = read_parts(tmp_path / "here").to_pandas().dropna(subset=["error"])
    assert failed["map_id"].tolist() == ["broken"] and "broken.nii.gz" in failed["error"].iloc[0]
    again = stage.run(items, path, tmp_path / "here", in_process=True, **kwargs)
    assert again.n_skipped == 2 and again.n_rows == here.n_rows  # resumed, no duplicates


def test_the_rule_for_decoding_here(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # not imported: not running
    local = RayOptions()
    assert decode_here(IN_PROCESS_MAPS, local, use_ray=False, num_actors=None)
    assert not decode_here(IN_PROCESS_MAPS + 1, local, use_ray=False, num_actors=None)
    assert not decode_here(1, local, use_ray=True, num_actors=None)
    assert not decode_here(1, local, use_ray=False, num_actors=2)
    assert not decode_here(1, RayOptions(address="127.0.0.1:6379"), use_ray=False, num_actors=None)
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # inside a Ray Job
    assert not decode_here(1, local, use_ray=False, num_actors=None)


@pytest.mark.timeout(300)
def test_the_command_decodes_one_map_with_ray_unimportable(bundle, tmp_path):
    path, atlas = bundle
    code = ("import sys; sys.modules['ray'] = None\n"  # any 'import ray' now fails
            "from niclip_ray.cli.main import run\n"
            f"sys.exit(run(['decode', {str(load_sample_motor_activation_image())!r}, '--model', {str(path)!r},"
            f" '--atlas-dir', {str(atlas)!r}, '--out', {str(tmp_path / 'o')!r}, '--standin', '--topk', '3']))")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    assert "image_10426: top predictions" in done.stdout
    assert "UserWarning" not in done.stderr and "stand-in atlas" in done.stderr
    results = read_parts(tmp_path / "o" / "decode").to_pandas()
    assert results.groupby("level").size().to_dict() == {"task": 3, "concept": 3, "domain": 10}
    assert (tmp_path / "o" / "csv" / "image_10426_task_predictions.csv").is_file()
    assert not (tmp_path / "o" / "logs").exists()  # no Ray session was opened
