"""Vocabulary embeddings and the vocabulary prior (``docs/method.md``, "Vocabulary and prior").

* Task names and task definitions are embedded separately with the same text embedder;
  the combined embedding is ``alpha * names + (1 - alpha) * definitions`` on the *raw*
  (unnormalised) vectors; the reference uses ``alpha = 0.5``.
* The prior of task ``v`` is the mean over training documents ``d`` of
  ``softmax_v(scale * cos(e_v, x_d))``, computed in the raw LLM space (not CLIP space) with
  rows normalised as ``x / (||x|| + 1e-8)``; the reference uses ``scale = 10``. It sums to 1.

:func:`embed_vocabulary` does it all for a task table, given any function that embeds
texts (a :class:`~niclip_ray.features.text.TextEmbedder`, or the Ray task of
:mod:`niclip_ray.pipelines.vocab`). Plain numpy; the file is :mod:`niclip_ray.model.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from niclip_ray._docs import fill_doc
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text import EmbeddingResult
from niclip_ray.model.vocabulary import make_vocabulary
from niclip_ray.vectors import l2_normalise

#: Task embeddings the prior can compare with the documents.
PRIOR_FROM = ("combined", "names", "definitions")


def combine_embeddings(names: np.ndarray, definitions: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``alpha * names + (1 - alpha) * definitions``: (V, D) float32.

    Raises
    ------
    InputError
        When ``alpha`` is outside [0, 1] or the shapes differ.
    """
    _check_alpha(alpha)
    names = np.asarray(names, dtype=np.float64)
    definitions = np.asarray(definitions, dtype=np.float64)
    if names.shape != definitions.shape or names.ndim != 2:
        raise InputError(f"name embeddings {names.shape} and definition embeddings {definitions.shape} differ")
    return (alpha * names + (1.0 - alpha) * definitions).astype(np.float32)


def vocabulary_prior(
    task_embeddings: np.ndarray, doc_embeddings: np.ndarray, scale: float = 10.0, chunk_size: int = 4096
) -> np.ndarray:
    """Prior probability of each vocabulary term over a set of documents.

    Parameters
    ----------
    task_embeddings : (V, D) array
        Raw vocabulary embeddings.
    doc_embeddings : (N, D) array
        Raw document embeddings (the training documents).
    scale : float
        Multiplies the cosine similarities before the softmax over the vocabulary.
    chunk_size : int
        Documents per block; bounds memory at ``V * chunk_size`` floats.

    Returns
    -------
    (V,) float64
        ``mean_d softmax_v(scale * S[v, d])`` with ``S`` the cosine matrix; sums to 1.

    Raises
    ------
    InputError
        On empty inputs, a width mismatch, or NaN/Inf embeddings.
    """
    tasks = l2_normalise(task_embeddings, dtype=np.float64)
    docs = np.asarray(doc_embeddings, dtype=np.float64)
    if tasks.ndim != 2 or docs.ndim != 2 or tasks.shape[1] != docs.shape[1]:
        raise InputError(f"task embeddings {tasks.shape} and document embeddings {docs.shape} are not (V, D), (N, D)")
    if len(tasks) == 0 or len(docs) == 0:
        raise InputError(f"the prior needs tasks and documents, got {len(tasks)} tasks and {len(docs)} documents")
    if not (np.isfinite(tasks).all() and np.isfinite(docs).all()):
        raise InputError("task or document embeddings hold NaN or Inf")
    total = np.zeros(len(tasks), dtype=np.float64)
    for start in range(0, len(docs), chunk_size):
        logits = scale * (tasks @ l2_normalise(docs[start : start + chunk_size], dtype=np.float64).T)  # (V, n)
        logits -= logits.max(axis=0, keepdims=True)
        weights = np.exp(logits)
        total += (weights / weights.sum(axis=0, keepdims=True)).sum(axis=1)
    return total / len(docs)


@fill_doc
def build_vocabulary(
    tasks: pd.DataFrame,
    name_embeddings: np.ndarray,
    definition_embeddings: np.ndarray,
    doc_embeddings: np.ndarray,
    *,
    alpha: float = 0.5,
    prior_scale: float = 10.0,
    prior_from: str = "combined",
) -> pd.DataFrame:
    """Combine a task table's embeddings and compute its prior, as a ``vocabulary.parquet`` frame.

    Parameters
    ----------
    %(vocabulary_tasks)s
    name_embeddings, definition_embeddings : (V, D) arrays
        Raw embeddings of the task names and of the task definitions, embedded separately.
    doc_embeddings : (N, D) array
        Raw embeddings of the training documents, same model.
    alpha, prior_scale
        See :func:`combine_embeddings` and :func:`vocabulary_prior`.
    prior_from : {"combined", "names", "definitions"}
        Which task embedding the prior compares with the documents.
    """
    _check_settings(tasks, alpha, prior_from)
    kinds = {"names": name_embeddings, "definitions": definition_embeddings}
    kinds["combined"] = combine_embeddings(name_embeddings, definition_embeddings, alpha)
    if len(kinds["combined"]) != len(tasks):
        raise InputError(f"{len(kinds['combined'])} task embeddings for {len(tasks)} tasks")
    prior = vocabulary_prior(kinds[prior_from], doc_embeddings, scale=prior_scale)
    return make_vocabulary(
        tasks["name"].astype(str).tolist(),
        kinds,
        prior,
        term_ids=tasks["task_id"].astype(str).tolist(),
        definitions=tasks["definition"].astype(str).tolist(),
    )


@fill_doc
def embed_vocabulary(
    tasks: pd.DataFrame,
    embed: Callable[[Sequence[str]], EmbeddingResult],
    doc_embeddings: np.ndarray,
    *,
    alpha: float = 0.5,
    prior_scale: float = 10.0,
    prior_from: str = "combined",
) -> pd.DataFrame:
    """Embed a task table's names and definitions, and build its vocabulary over the documents.

    Parameters
    ----------
    %(vocabulary_tasks)s
    embed : callable
        Maps a list of texts to their :class:`~niclip_ray.features.text.EmbeddingResult`,
        with the model that embedded the documents; called once, names then definitions.
    doc_embeddings : (N, D) array
        Raw embeddings of the training documents.
    alpha, prior_scale, prior_from
        See :func:`build_vocabulary`.

    Raises
    ------
    InputError
        When a task text cannot be embedded, or task and document widths differ.
    """
    _check_settings(tasks, alpha, prior_from)  # before the embedding, which may take minutes
    names = tasks["name"].astype(str).tolist()
    definitions = tasks["definition"].astype(str).tolist()
    texts = names + definitions
    result = embed(texts)
    failed = [f"{texts[i]!r}: {error}" for i, error in enumerate(result.errors) if error]
    if failed:
        raise InputError(f"{len(failed)} task names/definitions could not be embedded, e.g. {'; '.join(failed[:3])}")
    docs = np.asarray(doc_embeddings)
    if result.vectors.shape[1] != docs.shape[1]:
        raise InputError(f"task embeddings are {result.vectors.shape[1]}-d, documents {docs.shape[1]}-d")
    n = len(names)
    return build_vocabulary(
        tasks,
        result.vectors[:n],
        result.vectors[n:],
        docs,
        alpha=alpha,
        prior_scale=prior_scale,
        prior_from=prior_from,
    )


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError("alpha", f"must be in [0, 1], got {alpha}")


def _check_settings(tasks: pd.DataFrame, alpha: float, prior_from: str) -> None:
    _check_alpha(alpha)
    if prior_from not in PRIOR_FROM:
        raise ParameterError("prior_from", f"must be one of {', '.join(PRIOR_FROM)}; got {prior_from!r}")
    missing = [c for c in ("task_id", "name", "definition") if c not in tasks.columns]
    if missing:
        raise InputError(f"the task table lacks columns {missing}")
