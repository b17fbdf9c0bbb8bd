"""The multi-node tests' cluster and inputs, shared by the package's modules.

The cluster (:mod:`niclip_ray._local_cluster`: a head without CPUs and two 1-CPU worker
nodes) starts once for the package; a test that kills a worker node has it replaced
afterwards (:func:`whole_cluster`). The inputs are a synthetic corpus, maps on the toy
grid and a toy bundle; the reference outputs are the same stages on the embedded Ray.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from niclip_ray._local_cluster import start_local_cluster
from niclip_ray._testing import toy_bundle
from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.pipelines.shards import shard_path
from niclip_ray.tables import read_parts, tensor_to_numpy
from tests.conftest import machine_load, write_abstract_corpus

#: How long a node may take to start and register, before the machine's load stretches it.
NODE_START_S = 120.0
N_STUDIES = 300
N_MAPS = 200


def scaled(seconds: float) -> float:
    """A wait stretched by the machine's load (as the suite's timeouts are)."""
    return seconds * min(max(machine_load(), 1.0), 4.0)


@pytest.fixture(scope="package")
def local_cluster():
    """A head without CPUs and two 1-CPU worker nodes, shared by the package's tests."""
    cluster = start_local_cluster(timeout_s=scaled(NODE_START_S))
    yield cluster
    cluster.stop()


@pytest.fixture
def whole_cluster(local_cluster):
    """The cluster; worker nodes a test killed are replaced by fresh ones afterwards, as an autoscaler would."""
    yield local_cluster
    local_cluster.replace_lost_workers(timeout_s=scaled(NODE_START_S))


@pytest.fixture(scope="package")
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


def decode_argv(inputs, out, shard_size=10):
    return ["decode", str(inputs / "maps"), "--model", str(inputs / "bundle"), "--atlas-dir", str(inputs / "atlas"),
            "--standin", "--ray", "--no-csv", "--shard-size", str(shard_size), "--out", str(out)]


def on_cluster(cluster, inputs, argv):
    """The command as a Ray Job on ``cluster`` (an empty working directory travels with it)."""
    return ["--address", cluster.dashboard, "--working-dir", str(inputs / "workdir"), *argv]


@pytest.fixture(scope="package")
def embedded(inputs, ray_local, tmp_path_factory):
    """The same stages on the embedded Ray: the reference outputs."""
    root = tmp_path_factory.mktemp("embedded")
    assert run(image_argv(inputs, root / "images")) == 0
    assert run(decode_argv(inputs, root / "decode")) == 0
    return root


@pytest.fixture(scope="package")
def text_features(inputs, tiny_bert_factory):
    """The corpus's abstracts embedded by a tiny BERT, written by the text stage's own per-shard function."""
    from niclip_ray.features.text import TextEmbedder
    from niclip_ray.pipelines.text import process_texts, text_items
    from niclip_ray.tables import write_parquet_atomic

    out = inputs / "text"
    table = process_texts(text_items(inputs / "corpus", "abstract"), TextEmbedder(str(tiny_bert_factory(32))), "abstract")
    write_parquet_atomic(table, shard_path(out, 0))
    return out


def embeddings(path):
    """``(study ids, embeddings)`` of an image stage's parts, by study id."""
    table = read_parts(path).sort_by("study_id")
    return table["study_id"].to_pylist(), tensor_to_numpy(table["embedding"])


def decoded(out):
    """A decode run's rows (its parts are in ``OUT/decode``), in one order."""
    order = ["map_id", "level", "term_id"]
    return read_parts(out / "decode").to_pandas().sort_values(order).reset_index(drop=True)
