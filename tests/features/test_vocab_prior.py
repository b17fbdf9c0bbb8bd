"""Vocabulary combination and prior against hand-written numpy and explicit loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.features.text import EmbeddingResult
from niclip_ray.features.vocabulary import build_vocabulary, combine_embeddings, embed_vocabulary, vocabulary_prior


def softmax_average_by_hand(tasks: np.ndarray, docs: np.ndarray, scale: float) -> np.ndarray:
    """The prior's recipe (docs/method.md) written out one document at a time."""
    prior = np.zeros(len(tasks))
    for doc in docs:
        d = doc / (np.sqrt((doc**2).sum()) + 1e-8)
        sims = np.array([t @ d / (np.sqrt((t**2).sum()) + 1e-8) for t in tasks])
        e = np.exp(scale * sims)
        prior += e / e.sum()
    return prior / len(docs)


def test_prior_equals_hand_computation_and_sums_to_one():
    rng = np.random.default_rng(0)
    tasks, docs = rng.normal(size=(7, 16)) * 3, rng.normal(size=(23, 16)) + 0.5
    for scale in (10.0, 1.0, 35.0):
        got = vocabulary_prior(tasks, docs, scale=scale, chunk_size=5)  # several chunks, a ragged last one
        np.testing.assert_allclose(got, softmax_average_by_hand(tasks, docs, scale), rtol=1e-12)
        assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_prior_favours_the_task_closest_to_the_documents():
    tasks = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    docs = np.array([[0.1, 5.0, 0.2], [0.0, 2.0, 0.1], [0.3, 1.0, 0.0]])
    prior = vocabulary_prior(tasks, docs)
    assert prior.argmax() == 1 and prior[1] > 0.9
    flat = vocabulary_prior(tasks, docs, scale=0.0)
    np.testing.assert_allclose(flat, np.full(3, 1 / 3))


def test_prior_rejects_bad_inputs():
    with pytest.raises(InputError, match="not \\(V, D\\)"):
        vocabulary_prior(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(InputError, match="needs tasks and documents"):
        vocabulary_prior(np.ones((3, 4)), np.ones((0, 4)))
    with pytest.raises(InputError, match="NaN"):
        vocabulary_prior(np.ones((3, 4)), np.array([[1.0, np.nan, 0, 0]]))


def test_combination_is_the_weighted_sum_of_raw_vectors():
    names, defs = np.array([[1.0, 2.0], [3.0, -4.0]]), np.array([[10.0, 0.0], [0.0, 8.0]])
    np.testing.assert_allclose(combine_embeddings(names, defs), [[5.5, 1.0], [1.5, 2.0]])
    np.testing.assert_allclose(combine_embeddings(names, defs, alpha=0.25), [[7.75, 0.5], [0.75, 5.0]])
    with pytest.raises(InputError, match=r"alpha must be in \[0, 1\], got 1.5"):
        combine_embeddings(names, defs, alpha=1.5)
    with pytest.raises(InputError, match="differ"):
        combine_embeddings(names, defs[:1])


def test_build_vocabulary_combines_and_scores_raw_embeddings():
    tasks = pd.DataFrame(
        {
            "task_id": ["trm_1", "trm_2", "trm_3"],
            "name": ["n-back task", "flanker task", "stroop task"],
            "definition": ["hold items in memory", "respond to the centre arrow", "name the ink colour"],
        }
    )
    rng = np.random.default_rng(1)
    names, defs, docs = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)) * 4, rng.normal(size=(9, 5))
    vocab = build_vocabulary(tasks, names, defs, docs, alpha=0.3, prior_scale=7.0)
    np.testing.assert_allclose(np.stack(vocab["emb_name"]), names, rtol=1e-6)
    np.testing.assert_allclose(np.stack(vocab["emb_definition"]), defs, rtol=1e-6)
    np.testing.assert_allclose(np.stack(vocab["emb_combined"]), 0.3 * names + 0.7 * defs, rtol=1e-5)
    hand = softmax_average_by_hand(0.3 * names + 0.7 * defs, docs, 7.0)
    np.testing.assert_allclose(vocab["prior"], hand, rtol=1e-5)
    assert vocab["term_id"].tolist() == ["trm_1", "trm_2", "trm_3"]
    assert vocab["definition"].tolist() == tasks["definition"].tolist()
    by_names = build_vocabulary(tasks, names, defs, docs, prior_from="names")
    np.testing.assert_allclose(by_names["prior"], softmax_average_by_hand(names, docs, 10.0), rtol=1e-6)
    with pytest.raises(InputError, match="prior_from must be one of combined, names, definitions"):
        build_vocabulary(tasks, names, defs, docs, prior_from="titles")
    with pytest.raises(InputError, match="2 task embeddings for 3 tasks"):
        build_vocabulary(tasks, names[:2], defs[:2], docs)


TASKS = pd.DataFrame(
    {
        "task_id": ["trm_1", "trm_2", "trm_3"],
        "name": ["n-back task", "flanker task", "stroop task"],
        "definition": ["hold items in memory", "respond to the centre arrow", "name the ink colour"],
    }
)


class TableEmbedder:
    """Looks texts up in a fixed table of vectors; records every call."""

    def __init__(self, vectors: dict[str, np.ndarray], errors: dict[str, str] | None = None):
        self.vectors, self.errors, self.calls = vectors, errors or {}, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        errors = [self.errors.get(t, "") for t in texts]
        vectors = np.stack([self.vectors[t] for t in texts]).astype(np.float32)
        return EmbeddingResult(vectors, np.ones(len(texts), dtype=np.int64), errors)


def test_embed_vocabulary_embeds_names_and_definitions_once_and_scores_them():
    rng = np.random.default_rng(2)
    names, defs, docs = rng.normal(size=(3, 6)), rng.normal(size=(3, 6)), rng.normal(size=(8, 6))
    table = dict(zip(TASKS["name"], names)) | dict(zip(TASKS["definition"], defs))
    embed = TableEmbedder(table)
    vocab = embed_vocabulary(TASKS, embed, docs, alpha=0.25, prior_scale=4.0)
    assert embed.calls == [TASKS["name"].tolist() + TASKS["definition"].tolist()]
    np.testing.assert_allclose(np.stack(vocab["emb_combined"]), 0.25 * names + 0.75 * defs, rtol=1e-5)
    hand = softmax_average_by_hand(0.25 * names + 0.75 * defs, docs, 4.0)
    np.testing.assert_allclose(vocab["prior"], hand, rtol=1e-5)


def test_embed_vocabulary_reports_unembeddable_texts_and_bad_settings_early():
    rng = np.random.default_rng(3)
    table = {t: rng.normal(size=4) for t in [*TASKS["name"], *TASKS["definition"]]}
    failing = TableEmbedder(table, errors={"flanker task": "tokenizer failed"})
    with pytest.raises(InputError, match="1 task names/definitions could not be embedded, e.g. 'flanker task'"):
        embed_vocabulary(TASKS, failing, rng.normal(size=(5, 4)))
    with pytest.raises(InputError, match="task embeddings are 4-d, documents 3-d"):
        embed_vocabulary(TASKS, TableEmbedder(table), rng.normal(size=(5, 3)))
    unused = TableEmbedder(table)
    with pytest.raises(InputError, match="prior_from must be one of"):
        embed_vocabulary(TASKS, unused, rng.normal(size=(5, 4)), prior_from="titles")
    with pytest.raises(InputError, match="alpha must be in"):
        embed_vocabulary(TASKS, unused, rng.normal(size=(5, 4)), alpha=-0.1)
    assert unused.calls == []
