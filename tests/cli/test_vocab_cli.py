"""``niclip-ray vocab build`` and ``vocab info`` with a tiny BERT and the builtin ontology."""

from __future__ import annotations

import numpy as np
import pytest

from niclip_ray.cli.main import run
from niclip_ray.features.text import TextEmbedder
from niclip_ray.model.vocabulary import read_vocabulary
from niclip_ray.ontology import load_ontology
from niclip_ray.pipelines import text as text_stage
from niclip_ray.pipelines.shards import shard_path
from niclip_ray.tables import write_parquet_atomic

pytestmark = pytest.mark.timeout(300)
DOCS = {
    "d1": "Participants performed a 2-back working memory task during fMRI.",
    "d2": "The flanker task produced conflict effects in the anterior cingulate.",
    "d3": "Emotional faces were matched to shapes; the amygdala responded to faces.",
    "d4": "",
    "d5": "Finger tapping engaged primary motor cortex contralateral to the hand.",
}


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_factory):
    return tiny_bert_factory(128)


@pytest.fixture(scope="module")
def text_features(tiny_bert, tmp_path_factory):
    """A text stage directory written by the stage's own per-shard function."""
    out = tmp_path_factory.mktemp("features") / "text"
    items = [{"study_id": k, "text": v or None, "input_error": "" if v else "no body text"} for k, v in DOCS.items()]
    table = text_stage.process_texts(items, TextEmbedder(str(tiny_bert)), "body")
    write_parquet_atomic(table, shard_path(out, 0))
    return out


def hand_prior(tasks, docs, scale=10.0):
    t = tasks / (np.linalg.norm(tasks, axis=1, keepdims=True) + 1e-8)
    d = docs / (np.linalg.norm(docs, axis=1, keepdims=True) + 1e-8)
    e = np.exp(scale * t @ d.T)
    return (e / e.sum(axis=0)).mean(axis=1)


def test_vocab_build_and_info(ray_local, tiny_bert, text_features, tmp_path, capsys):
    out = tmp_path / "vocabulary.parquet"
    argv = ["vocab", "build", "--ontology", "builtin", "--model", str(tiny_bert), "--text-features",
            str(text_features), "--out", str(out), "--alpha", "0.4"]  # fmt: skip
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "vocab: 55 tasks, prior over 4 body documents (1 failed left out)" in printed

    vocab = read_vocabulary(out)
    tasks = load_ontology("builtin").tasks
    assert vocab["term_id"].tolist() == tasks["task_id"].tolist()
    embedder = TextEmbedder(str(tiny_bert))
    names = embedder.embed(tasks["name"].tolist()).vectors
    defs = embedder.embed(tasks["definition"].tolist()).vectors
    np.testing.assert_allclose(np.stack(vocab["emb_name"]), names, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.stack(vocab["emb_definition"]), defs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.stack(vocab["emb_combined"]), 0.4 * names + 0.6 * defs, rtol=1e-4, atol=1e-5)
    docs = embedder.embed([DOCS[k] for k in ("d1", "d2", "d3", "d5")]).vectors
    np.testing.assert_allclose(vocab["prior"], hand_prior(0.4 * names + 0.6 * defs, docs), rtol=1e-4)
    assert vocab["prior"].sum() == pytest.approx(1.0)

    ids = tmp_path / "train.txt"
    ids.write_text("# training split\nd2\n\nd5\n")
    subset = tmp_path / "subset.parquet"
    assert run([*argv[:-4], "--out", str(subset), "--train-ids", str(ids), "--prior-scale", "3"]) == 0
    capsys.readouterr()
    expected = hand_prior(0.5 * names + 0.5 * defs, docs[[1, 3]], scale=3.0)
    np.testing.assert_allclose(read_vocabulary(subset)["prior"], expected, rtol=1e-4)

    assert run(["vocab", "info", str(out), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    top = vocab.sort_values("prior", ascending=False)["name"].iloc[0]
    assert "55" in printed and "32-d" in printed and top in printed and str(tiny_bert) in printed


def test_vocab_build_refuses_another_model_and_unknown_ids(ray_local, text_features, tmp_path, capsys):
    argv = ["vocab", "build", "--model", "all-minilm-l6-v2", "--text-features", str(text_features),
            "--out", str(tmp_path / "v.parquet")]  # fmt: skip
    assert run(argv) == 1
    assert "were embedded with" in capsys.readouterr().err
    ids = tmp_path / "ids.txt"
    ids.write_text("d1\nnot-a-study\n")
    assert run([*argv, "--train-ids", str(ids)]) == 1
    assert "1 training ids are not in" in capsys.readouterr().err
    assert run(["vocab", "info", str(tmp_path / "missing.parquet")]) == 1
    assert "cannot read vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "v.parquet").exists()


def test_vocab_build_names_the_flag_of_a_bad_setting_before_embedding(ray_local, tiny_bert, text_features, tmp_path,
                                                                      capsys):
    argv = ["vocab", "build", "--model", str(tiny_bert), "--text-features", str(text_features),
            "--out", str(tmp_path / "v.parquet"), "--prior-from", "titles"]  # fmt: skip
    assert run(argv) == 1
    assert "--prior-from must be one of combined, names, definitions; got 'titles'" in capsys.readouterr().err
    assert run([*argv[:5], str(tmp_path / "no-such-stage"), *argv[6:8]]) == 1
    assert f"--text-features {tmp_path / 'no-such-stage'}" in capsys.readouterr().err
    assert not (tmp_path / "v.parquet").exists()


def test_builds_sharing_a_cache_embed_each_task_text_once(ray_local, tiny_bert, text_features, monkeypatch):
    from niclip_ray.pipelines import vocab as vocab_stage

    calls = []
    embed_texts = vocab_stage.embed_texts

    def counted(texts, **options):
        calls.append(len(texts))
        return embed_texts(texts, **options)

    monkeypatch.setattr(vocab_stage, "embed_texts", counted)
    tasks = load_ontology("builtin").tasks
    alone = vocab_stage.run(tasks.iloc[:7], text_features, model=str(tiny_bert)).vocabulary
    cache = {}
    full = vocab_stage.run(tasks, text_features, model=str(tiny_bert), cache=cache).vocabulary
    subset = vocab_stage.run(tasks.iloc[:7], text_features, model=str(tiny_bert), cache=cache,
                             train_ids=["d1", "d2"]).vocabulary
    assert calls == [14, 2 * len(tasks)]  # the subset took every text from the cache
    for column in ("emb_name", "emb_definition", "emb_combined"):
        np.testing.assert_allclose(np.stack(subset[column]), np.stack(alone[column]), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.stack(subset[column]), np.stack(full[column])[:7])
    assert not np.allclose(subset["prior"], alone["prior"])  # the prior is each build's own
