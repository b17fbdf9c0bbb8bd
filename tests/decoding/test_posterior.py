"""Posterior, Bayes factor and noisy-OR against direct loops over the reference formulas."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from niclip_ray.decoding.posterior import noisy_or, softmax, task_posterior, top_k
from niclip_ray.vectors import l2_normalise


def loop_task_posterior(image, texts, prior, s):
    """docs/method.md "Decoding", one map, one term at a time."""
    cos = []
    for t in texts:
        dot = sum(a * b for a, b in zip(image, t))
        cos.append(dot / (math.sqrt(sum(a * a for a in image)) * math.sqrt(sum(b * b for b in t))))
    sim = [s * c for c in cos]
    m = max(sim)
    z = sum(math.exp(x - m) for x in sim)
    lik = [math.exp(x - m) / z for x in sim]
    joint = [a * b for a, b in zip(lik, prior)]
    total = sum(joint)
    post = [j / total for j in joint]
    bf = [(p / (1 - p)) / (q / (1 - q)) for p, q in zip(post, prior)]
    return sim, lik, joint, post, bf


def loop_noisy_or(prob, groups):
    """P(G) = 1 - prod over members (1 - P(member)); 0 for an empty group."""
    out = []
    for members in groups:
        product = 1.0
        for i in members:
            product *= 1.0 - prob[i]
        out.append(1.0 - product if members else 0.0)
    return out


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    n, V, D = 4, 9, 6
    images = rng.standard_normal((n, D))
    texts = rng.standard_normal((V, D))
    prior = rng.random(V) + 0.05
    return images, texts, prior / prior.sum()


@pytest.mark.parametrize("s", [10.0, 20.0, 3.7])
def test_task_posterior_matches_loops(case, s):
    images, texts, prior = case
    cosine = l2_normalise(images, dtype=np.float64) @ l2_normalise(texts, dtype=np.float64).T
    got = task_posterior(cosine, prior, s)
    for i, image in enumerate(images):
        sim, lik, joint, post, bf = loop_task_posterior(image.tolist(), texts.tolist(), prior.tolist(), s)
        np.testing.assert_allclose(got.similarity[i], sim, atol=1e-6)
        np.testing.assert_allclose(got.likelihood[i], lik, atol=1e-6)
        np.testing.assert_allclose(got.joint[i], joint, atol=1e-6)
        np.testing.assert_allclose(got.posterior[i], post, atol=1e-6)
        np.testing.assert_allclose(got.bayes_factor[i], bf, rtol=1e-6)
    np.testing.assert_allclose(got.posterior.sum(axis=1), 1.0)


def test_posterior_with_uniform_prior_is_the_likelihood(case):
    images, texts, _ = case
    V = len(texts)
    cosine = l2_normalise(images, dtype=np.float64) @ l2_normalise(texts, dtype=np.float64).T
    got = task_posterior(cosine, np.full(V, 1 / V), 10.0)
    np.testing.assert_allclose(got.posterior, got.likelihood)
    # BF = odds ratio; with posterior == prior it would be 1
    flat = task_posterior(np.zeros((1, V)), np.full(V, 1 / V), 10.0)
    np.testing.assert_allclose(flat.bayes_factor, 1.0)


def test_noisy_or_matches_loops():
    rng = np.random.default_rng(0)
    prob = rng.random((3, 6)) * 0.6
    prob[1, 2] = 1.0  # a certain task makes its concepts certain
    groups = [[0, 1], [2], [], [1, 3, 4, 5], [0, 2, 5]]
    membership = np.zeros((6, len(groups)))
    for k, members in enumerate(groups):
        membership[members, k] = 1
    got = noisy_or(prob, sp.csr_matrix(membership))
    for i in range(3):
        np.testing.assert_allclose(got[i], loop_noisy_or(prob[i].tolist(), groups), atol=1e-12)
    assert got[1, 1] == 1.0 and got[1, 4] == 1.0 and (got[:, 2] == 0).all()
    np.testing.assert_allclose(noisy_or(prob, membership), got)  # dense membership too


def test_two_level_noisy_or_matches_reference_loops():
    """Concepts from tasks, then domains from concepts, as the reference's hierarchical decoder."""
    rng = np.random.default_rng(5)
    post = softmax(rng.standard_normal((2, 7)) * 3)
    concept_tasks = [[0, 3], [1], [2, 4, 6], [], [5, 6]]
    domain_concepts = [[0, 1], [2], [3], [4, 0]]
    tc = np.zeros((7, 5))
    for c, tasks in enumerate(concept_tasks):
        tc[tasks, c] = 1
    cd = np.zeros((5, 4))
    for d, concepts in enumerate(domain_concepts):
        cd[concepts, d] = 1
    concept = noisy_or(post, tc)
    domain = noisy_or(concept, cd)
    for i in range(2):
        c_loop = loop_noisy_or(post[i].tolist(), concept_tasks)
        np.testing.assert_allclose(concept[i], c_loop, atol=1e-9)
        np.testing.assert_allclose(domain[i], loop_noisy_or(c_loop, domain_concepts), atol=1e-9)


def test_membership_shape_mismatch():
    with pytest.raises(ValueError, match="membership has 3 rows for 4"):
        noisy_or(np.zeros((1, 4)), np.zeros((3, 2)))


def test_top_k_orders_and_breaks_ties_stably():
    scores = np.array([[0.1, 0.5, 0.5, 0.2]])
    assert top_k(scores, 3).tolist() == [[1, 2, 3]]
    assert top_k(scores, None).tolist() == [[1, 2, 3, 0]]
    assert top_k(scores, 10).shape == (1, 4)
