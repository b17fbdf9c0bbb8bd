"""Text stage on Ray: NiMARE's shipped n-back/flanker abstracts, a real packaged encoder
(all-MiniLM-L6-v2), per-row errors, resume, and the reader used by the vocabulary prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from niclip_ray.errors import InputError
from niclip_ray.features.text import TextEmbedder
from niclip_ray.features.text_table import read_text_features
from niclip_ray.pipelines import text as text_stage
from niclip_ray.tables import read_parts, tensor_to_numpy

MODEL = "all-minilm-l6-v2"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """20 real studies (abstracts) plus an empty and a whitespace-only abstract."""
    from niclip_ray.corpus import ingest

    full = tmp_path_factory.mktemp("full")
    ingest("nimare:nback_vs_flanker", full)
    studies = pd.read_parquet(full / "studies.parquet").head(20).copy()
    studies.loc[studies.index[3], "abstract"] = ""
    studies.loc[studies.index[11], "abstract"] = "  \n "
    out = tmp_path_factory.mktemp("corpus")
    studies.to_parquet(out / "studies.parquet", index=False)
    coords = pd.read_parquet(full / "coordinates.parquet")
    coords[coords["study_id"].isin(studies["study_id"])].to_parquet(out / "coordinates.parquet", index=False)
    return out


def test_stage_embeds_abstracts_with_row_errors_and_resumes(ray_local, corpus_dir, tmp_path):
    out = tmp_path / "features" / "text"
    kwargs = dict(model=MODEL, section="abstract", max_length=64, shard_size=8, num_actors=1)
    summary = text_stage.run(corpus_dir, out, **kwargs)
    assert (summary.n_shards, summary.n_skipped, summary.n_rows, summary.n_failed_rows) == (3, 0, 20, 2)
    assert not summary.failed_shards

    table = read_parts(out)
    assert table.column_names == ["study_id", "section", "embedding", "n_tokens", "model_id", "error"]
    studies = pd.read_parquet(corpus_dir / "studies.parquet").sort_values("study_id")
    assert table["study_id"].to_pylist() == studies["study_id"].tolist()
    frame = table.drop(["embedding"]).to_pandas()
    bad = frame["error"].notna()
    assert sorted(frame.loc[bad, "error"]) == ["no abstract text", "whitespace-only abstract"]
    assert set(frame.loc[bad, "study_id"]) == set(studies.loc[studies["abstract"].str.strip() == "", "study_id"])
    assert table["embedding"].type.shape == [384]
    vectors = tensor_to_numpy(table["embedding"])
    assert np.isnan(vectors[bad.to_numpy()]).all()

    expected = TextEmbedder(MODEL, max_length=64).embed(studies.loc[~bad.to_numpy(), "abstract"].tolist())
    np.testing.assert_allclose(vectors[~bad.to_numpy()], expected.vectors, rtol=1e-4, atol=1e-5)
    assert frame.loc[~bad, "n_tokens"].tolist() == expected.n_tokens.tolist()
    assert (frame.loc[~bad, "n_tokens"] > 64).all()  # every abstract spans several windows
    assert set(frame["model_id"]) == {MODEL} and set(frame["section"]) == {"abstract"}

    before = pq.read_table(out / "part-00001.parquet")
    (out / "part-00001.parquet").unlink()
    resumed = text_stage.run(corpus_dir, out, **kwargs)
    assert (resumed.n_skipped, resumed.n_rows, resumed.n_failed_rows) == (2, 20, 2)
    assert pq.read_table(out / "part-00001.parquet").equals(before)
    with pytest.raises(InputError, match="resume needs the same"):
        text_stage.run(corpus_dir, out, **{**kwargs, "max_length": 32})

    features = read_text_features(out)
    assert features.embeddings.shape == (18, 384) and features.n_failed == 2
    assert (features.model_id, features.section) == (MODEL, "abstract")
    train = [features.study_ids[0], features.study_ids[5], frame.loc[bad, "study_id"].iloc[0]]
    subset = read_text_features(out, train_ids=train)
    assert subset.study_ids == sorted(train[:2]) and subset.n_failed == 1
    np.testing.assert_array_equal(subset.embeddings[0], features.embeddings[0])
    with pytest.raises(InputError, match="1 training ids are not in"):
        read_text_features(out, train_ids=["no-such-study"])


def test_embed_texts_runs_in_a_ray_task(ray_local):
    texts = ["working memory n-back", "flanker interference", ""]
    result, model_id = text_stage.embed_texts(texts, model=MODEL, timeout_s=240)
    expected = TextEmbedder(MODEL).embed(texts)
    assert model_id == MODEL and result.errors == ["", "", "empty text"]
    np.testing.assert_allclose(result.vectors[:2], expected.vectors[:2], rtol=1e-4, atol=1e-5)


def test_manifest_reports_missing_sections_and_bad_models_before_ray(corpus_dir, tmp_path):
    items = text_stage.text_items(corpus_dir, "body")
    assert {item["input_error"] for item in items} == {"no body text"}
    with pytest.raises(InputError, match="section must be one of abstract, body, title, keywords, title\\+keywords"):
        text_stage.text_items(corpus_dir, "doi")
    with pytest.raises(InputError, match="not a preset"):
        text_stage.run(corpus_dir, tmp_path / "out", model=str(tmp_path / "nope"), section="abstract")
    assert not (tmp_path / "out").exists()


def test_process_texts_keeps_the_schema_when_every_row_fails():
    embedder = TextEmbedder(MODEL)
    items = [
        {"study_id": "a", "text": None, "input_error": "no body text"},
        {"study_id": "b", "text": "\udcff", "input_error": ""},
    ]
    table = text_stage.process_texts(items, embedder, "body")
    assert table["error"].to_pylist() == ["no body text", "text is not valid Unicode (lone surrogate at character 0)"]
    assert table["embedding"].null_count == 2 and table["embedding"].type.shape == [384]
    assert table["n_tokens"].to_pylist() == [0, 0]


def test_worker_shape_is_one_actor_per_gpu_else_fractional_cpu_actors(monkeypatch):
    from niclip_ray.runtime import session

    monkeypatch.setattr(session, "cluster_gpus", lambda: 4.0)
    monkeypatch.setattr(session, "cluster_cpus", lambda: 64.0)
    monkeypatch.setattr(session, "largest_node_cpus", lambda: 64.0)
    assert text_stage.worker_shape(None) == text_stage.WorkerShape(4, 1.0, 1.0, None)
    assert text_stage.worker_shape(2).num_actors == 2
    monkeypatch.setattr(session, "cluster_gpus", lambda: 0.0)
    monkeypatch.setattr(session, "cluster_cpus", lambda: 2.0)
    monkeypatch.setattr(session, "largest_node_cpus", lambda: 2.0)
    assert text_stage.worker_shape(None) == text_stage.WorkerShape(1, 1.5, 0.0, 2)
    assert text_stage.worker_shape(2) == text_stage.WorkerShape(2, 0.75, 0.0, 1)
    monkeypatch.setattr(session, "largest_node_cpus", lambda: 1.0)  # two 1-CPU nodes: 1.5 CPUs fit neither
    assert text_stage.worker_shape(None) == text_stage.WorkerShape(1, 1.0, 0.0, 1)


def test_manifest_flags_bytes_that_are_not_utf8(tmp_path):
    import pyarrow as pa

    studies = pa.table({
        "study_id": ["a", "b", "c"],
        "abstract": pa.array([b"caf\xc3\xa9 task", b"bad \xff byte", b"   "], pa.binary()),
    })  # fmt: skip
    pq.write_table(studies, tmp_path / "studies.parquet")
    pq.write_table(pa.table({"study_id": ["a"], "x": [0.0], "y": [0.0], "z": [0.0]}), tmp_path / "coordinates.parquet")
    items = text_stage.text_items(tmp_path, "abstract")
    assert [item["text"] for item in items] == ["café task", None, None]
    assert [item["input_error"] for item in items] == [
        "", "abstract is not valid UTF-8 (byte 0xff at offset 4)", "whitespace-only abstract"
    ]  # fmt: skip
