"""Posterior, Bayes factor and noisy-OR maths of NiCLIP decoding, vectorised over maps.

For a map with CLIP image features ``f`` and task text features ``t_i`` (both L2
normalised) and a decoding scale ``s`` (``docs/method.md``, "Decoding")::

    similarity_i = s * cos(f, t_i)
    likelihood_i = softmax_i(similarity)             # normalised over tasks
    joint_i      = likelihood_i * prior_i
    posterior_i  = joint_i / sum_j joint_j
    BF_i         = [posterior_i / (1 - posterior_i)] / [prior_i / (1 - prior_i)]

Concept and domain probabilities combine their linked tasks (concepts) by noisy-OR,
``P(C|A) = 1 - prod_{t in C} (1 - P(t|A))``, computed for every map at once as
``1 - exp(log(1 - P) @ M)`` with a sparse incidence matrix ``M``. A term without links gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class TaskPosterior:
    """Task-level decoding of ``n`` maps over ``V`` tasks (all float64).

    Attributes
    ----------
    similarity, likelihood, joint, posterior, bayes_factor : (n, V) arrays
    prior : (V,) array
    """

    similarity: np.ndarray
    likelihood: np.ndarray
    prior: np.ndarray
    joint: np.ndarray
    posterior: np.ndarray
    bayes_factor: np.ndarray


def task_posterior(cosine: np.ndarray, prior: np.ndarray, logit_scale: float) -> TaskPosterior:
    """Likelihood, posterior and Bayes factor from cosine similarities.

    Parameters
    ----------
    cosine : (n, V) array
        ``cos(image features, text features)`` per map and task.
    prior : (V,) array
        Prior probability of each task, each in [0, 1).
    logit_scale : float
        The scale ``s`` (linear, no exp).

    Returns
    -------
    TaskPosterior
    """
    cosine = np.atleast_2d(np.asarray(cosine, dtype=np.float64))
    prior = np.asarray(prior, dtype=np.float64).reshape(-1)
    similarity = float(logit_scale) * cosine
    likelihood = softmax(similarity, axis=1)
    joint = likelihood * prior[None, :]
    posterior = joint / joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bayes_factor = (posterior / (1.0 - posterior)) / (prior / (1.0 - prior))[None, :]
    return TaskPosterior(similarity, likelihood, prior, joint, posterior, bayes_factor)


def noisy_or(prob: np.ndarray, membership: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Noisy-OR of member probabilities: ``1 - prod_{members}(1 - p)`` for every group.

    Parameters
    ----------
    prob : (n, V) array
        Member probabilities per map (tasks, or concepts).
    membership : (V, K) sparse or dense 0/1 matrix
        ``membership[v, k] = 1`` when member ``v`` belongs to group ``k``
        (e.g. :attr:`Ontology.task_concept_matrix`).

    Returns
    -------
    (n, K) float64
        0 for a group without members.
    """
    prob = np.atleast_2d(np.asarray(prob, dtype=np.float64))
    membership = sp.csr_matrix(membership, dtype=np.float64)
    if membership.shape[0] != prob.shape[1]:
        raise ValueError(f"membership has {membership.shape[0]} rows for {prob.shape[1]} member probabilities")
    with np.errstate(divide="ignore"):
        log_q = np.log1p(-np.clip(prob, 0.0, 1.0))  # -inf where p == 1
    # sparse @ dense touches stored entries only, so -inf never meets a zero weight
    summed = np.asarray((membership.T @ log_q.T).T)
    return -np.expm1(summed)


def top_k(scores: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first (stable for ties).

    Parameters
    ----------
    scores : (n, V) array
    k : int or None
        None keeps all.

    Returns
    -------
    (n, min(k, V)) int array
    """
    scores = np.atleast_2d(scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    return order if k is None else order[:, : max(0, int(k))]
