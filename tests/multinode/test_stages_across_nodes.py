"""Stages on a real three-node cluster, submitted with ``--address`` as a user would.

Every socket of the three nodes is on loopback; both worker nodes run the stage's actors
(the summary names the shards each node wrote) and the output equals an embedded-Ray run
row for row; DDP training across the two nodes gives the one-process weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from niclip_ray._local_cluster import WORKERS
from niclip_ray.cli.main import run
from tests.conftest import LOOPBACK, tree_listening
from tests.multinode.conftest import (
    N_MAPS,
    N_STUDIES,
    decode_argv,
    decoded,
    embeddings,
    image_argv,
    on_cluster,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def shards_per_node(printed: str) -> str:
    [line] = [line for line in printed.splitlines() if "shards per node" in line]
    return line


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
    got, want = decoded(tmp_path / "decode"), decoded(embedded / "decode")
    assert got["map_id"].nunique() == N_MAPS and not got.duplicated(["map_id", "level", "term_id"]).any()
    pd.testing.assert_frame_equal(got, want)


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
