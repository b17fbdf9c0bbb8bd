"""Stages on a real three-node cluster, submitted with ``--address`` as a user would.

Both worker nodes run the stage's actors (the summary names the shards each node wrote),
the output equals an embedded-Ray run row for row, and a worker node killed while a stage
runs loses nothing and doubles nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from niclip_ray._local_cluster import WORKERS
from niclip_ray._testing import toy_bundle
from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.pipelines.shards import shard_path
from niclip_ray.tables import read_parts, tensor_to_numpy
from tests.conftest import LOOPBACK, tree_listening, write_abstract_corpus
from tests.multinode.conftest import scaled

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
N_STUDIES = 300
N_MAPS = 200


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A synthetic corpus of ``N_STUDIES`` studies, ``N_MAPS`` maps on the toy grid, a toy bundle, an empty working dir."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (root / "corpus").mkdir()
    ids = [f"s{i:04d}" for i in range(N_STUDIES)]
    counts = rng.integers(2, 9, N_STUDIES)
    peaks = rng.uniform([-60, -90, -40], [60, 60, 70], (int(counts.sum()), 3)).round(1)
    study = np.repeat(ids, counts)
    coords = pd.DataFrame({"study_id": study, "analysis_id": study, "x": peaks[:, 0], "y": peaks[:, 1],
                           "z": peaks[:, 2], "space_in": "MNI"})
    topics = ["working memory", "flanker conflict", "finger tapping", "face matching", "reading words"]
    write_abstract_corpus(root / "corpus", {sid: f"Study {i} of {topics[i % 5]}." for i, sid in enumerate(ids)}, coords)
    build_standin(default_standin_dir(0), 64, seed=0)
    toy_bundle(root / "bundle", root / "atlas")
    grid = nib.load(next((root / "atlas").rglob("*.nii.gz")))
    (root / "maps").mkdir()
    for i in range(N_MAPS):
        data = rng.standard_normal(grid.shape[:3]).astype(np.float32)
        nib.save(nib.Nifti1Image(data, grid.affine), root / "maps" / f"map{i:03d}.nii.gz")
    (root / "workdir").mkdir()
    return root


def image_argv(inputs, out, shard_size=10):
    return ["embed", "images", "--corpus", str(inputs / "corpus"), "--dim", "64", "--atlas-dir",
            str(default_standin_dir(0)), "--standin", "--shard-size", str(shard_size), "--out", str(out)]


def decode_argv(inputs, out):
    return ["decode", str(inputs / "maps"), "--model", str(inputs / "bundle"), "--atlas-dir", str(inputs / "atlas"),
            "--standin", "--ray", "--no-csv", "--shard-size", "10", "--out", str(out)]


def on_cluster(cluster, inputs, argv):
    """The command as a Ray Job on ``cluster`` (an empty working directory travels with it)."""
    return ["--address", cluster.dashboard, "--working-dir", str(inputs / "workdir"), *argv]


def shards_per_node(printed: str) -> str:
    [line] = [line for line in printed.splitlines() if "shards per node" in line]
    return line


@pytest.fixture(scope="module")
def embedded(inputs, ray_local, tmp_path_factory):
    """The same stages on the embedded Ray: the reference outputs."""
    root = tmp_path_factory.mktemp("embedded")
    assert run(image_argv(inputs, root / "images")) == 0
    assert run(decode_argv(inputs, root / "decode")) == 0
    return root


def embeddings(path):
    table = read_parts(path).sort_by("study_id")
    return table["study_id"].to_pylist(), tensor_to_numpy(table["embedding"])


def test_every_node_listens_on_loopback_only(local_cluster):
    seen = set()
    for node in local_cluster.nodes.values():
        seen |= tree_listening(psutil.Process(node.proc.pid))
    names = {name for _, _, name in seen}
    assert {"raylet", "gcs_server"} <= names, names
    assert {ip for ip, _, _ in seen} <= LOOPBACK, sorted(s for s in seen if s[0] not in LOOPBACK)


def test_embed_images_runs_on_both_nodes_and_equals_an_embedded_run(local_cluster, inputs, embedded, tmp_path,
                                                                    capsys):
    assert run(on_cluster(local_cluster, inputs, image_argv(inputs, tmp_path / "images"))) == 0
    line = shards_per_node(capsys.readouterr().out)
    assert all(local_cluster.node_id(name)[:8] in line for name in WORKERS), line
    ids, vectors = embeddings(tmp_path / "images")
    want_ids, want = embeddings(embedded / "images")
    assert ids == want_ids and len(set(ids)) == N_STUDIES
    np.testing.assert_array_equal(vectors, want)


def test_decode_runs_on_both_nodes_and_equals_an_embedded_run(local_cluster, inputs, embedded, tmp_path, capsys):
    assert run(on_cluster(local_cluster, inputs, decode_argv(inputs, tmp_path / "decode"))) == 0
    line = shards_per_node(capsys.readouterr().out)
    assert all(local_cluster.node_id(name)[:8] in line for name in WORKERS), line
    got = read_parts(tmp_path / "decode" / "decode").to_pandas()  # decode keeps its parts in OUT/decode
    want = read_parts(embedded / "decode" / "decode").to_pandas()
    order = ["map_id", "level", "term_id"]
    got, want = (frame.sort_values(order).reset_index(drop=True) for frame in (got, want))
    assert got["map_id"].nunique() == N_MAPS and not got.duplicated(order).any()
    pd.testing.assert_frame_equal(got, want)


@pytest.fixture(scope="module")
def text_features(inputs, tiny_bert_factory):
    """The corpus's abstracts embedded by a tiny BERT, written by the text stage's own per-shard function."""
    from niclip_ray.features.text import TextEmbedder
    from niclip_ray.pipelines.text import process_texts, text_items
    from niclip_ray.tables import write_parquet_atomic

    out = inputs / "text"
    table = process_texts(text_items(inputs / "corpus", "abstract"), TextEmbedder(str(tiny_bert_factory(32))), "abstract")
    write_parquet_atomic(table, shard_path(out, 0))
    return out


def test_train_with_a_worker_on_each_node_gives_the_one_process_weights(local_cluster, inputs, embedded,
                                                                         text_features, tmp_path):
    """Two DDP workers of 0.75 CPU cannot share a 1-CPU node: gloo runs across the two raylets.

    The weights match to one learning-rate step (5e-4): the batch is summed in another order
    (two slices, all-gathered), and where an element's gradient is near zero Adam turns that
    float32 noise into a step of up to the learning rate.
    """
    from niclip_ray.model.bundle import load_bundle

    argv = ["train", "--images", str(embedded / "images"), "--text", str(text_features), "--section", "abstract",
            "--folds", "2", "--epochs", "1", "--batch-size", "32", "--max-concurrent-folds", "1", "--dropout", "0"]
    assert run(on_cluster(local_cluster, inputs, [*argv, "--num-workers", "2", "--out", str(tmp_path / "two")])) == 0
    assert run([*argv, "--num-workers", "1", "--out", str(tmp_path / "one")]) == 0
    two, one = (load_bundle(tmp_path / name / "bundle").state_dict for name in ("two", "one"))
    assert two.keys() == one.keys()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-3, atol=5e-4)


def test_a_worker_node_lost_mid_stage_loses_and_doubles_nothing(local_cluster, inputs, embedded, tmp_path):
    """Kill node_b (its whole process group) once the first parts are written; finish or rerun; compare."""
    out = tmp_path / "images"
    argv = [sys.executable, "-m", "niclip_ray", *on_cluster(local_cluster, inputs, image_argv(inputs, out, 2))]
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + scaled(300)
    while not shard_path(out, 2).exists():
        assert job.poll() is None and time.monotonic() < deadline, "the stage wrote no part before the kill"
        time.sleep(0.2)
    local_cluster.nodes["node_b"].kill()
    killed_at = time.monotonic()
    printed, _ = job.communicate(timeout=scaled(600))
    recovered_s = time.monotonic() - killed_at
    outcome = "finished on the surviving node" if job.returncode == 0 else "failed, then a rerun completed"
    if job.returncode != 0:
        assert "error" in printed.lower(), printed[-2000:]
        rerun = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(600))
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    print(f"node loss: {outcome}; {recovered_s:.0f} s from the kill to the end of the first run")
    ids, vectors = embeddings(out)
    want_ids, want = embeddings(embedded / "images")
    assert ids == want_ids  # every study once: nothing lost, nothing doubled
    np.testing.assert_array_equal(vectors, want)
