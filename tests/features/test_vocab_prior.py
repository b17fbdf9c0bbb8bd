"""Vocabulary combination and prior against hand-written numpy and explicit loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.features.vocabulary import build_vocabulary, combine_embeddings, vocabulary_prior


def softmax_average_by_hand(tasks: np.ndarray, docs: np.ndarray, scale: float) -> np.ndarray:
    """The §1.5 recipe written out one document at a time."""
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
    with pytest.raises(InputError, match="alpha"):
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
    with pytest.raises(InputError, match="--prior-from"):
        build_vocabulary(tasks, names, defs, docs, prior_from="titles")
    with pytest.raises(InputError, match="2 task embeddings for 3 tasks"):
        build_vocabulary(tasks, names[:2], defs[:2], docs)
