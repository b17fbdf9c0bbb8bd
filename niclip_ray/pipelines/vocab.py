"""Vocabulary stage: task names and definitions embedded on Ray, the prior over the documents.

The maths is :func:`niclip_ray.features.vocabulary.embed_vocabulary`; this module reads
the text stage's documents, checks they were embedded with the same model, and hands the
core an ``embed`` that runs as one Ray task (on a GPU when the cluster has one). The
result is written with :func:`niclip_ray.model.vocabulary.write_vocabulary`, its
provenance in the Parquet metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from niclip_ray.errors import ParameterError
from niclip_ray.features.text import EmbeddingResult
from niclip_ray.features.text_models import resolve_model
from niclip_ray.features.text_table import read_text_features
from niclip_ray.features.vocabulary import embed_vocabulary
from niclip_ray.model.vocabulary import write_vocabulary
from niclip_ray.pipelines.text import DEFAULT_BATCH_SIZE, embed_texts, stage_max_length


@dataclass
class VocabularyBuild:
    """A built vocabulary and how it was made.

    Attributes
    ----------
    vocabulary : DataFrame
        The ``vocabulary.parquet`` contract (:mod:`niclip_ray.model.vocabulary`).
    provenance : dict
        Model, section, alpha, prior settings and document counts; add entries before
        :meth:`write` to record them too.
    """

    vocabulary: pd.DataFrame
    provenance: dict

    def write(self, path: str | Path) -> Path:
        """Write ``vocabulary.parquet`` atomically, with the provenance in the schema metadata."""
        return write_vocabulary(self.vocabulary, path, provenance=self.provenance)


def run(
    tasks: pd.DataFrame,
    text_features: str | Path,
    *,
    model: str,
    base_model: str | None = None,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: str = "auto",
    alpha: float = 0.5,
    prior_scale: float = 10.0,
    prior_from: str = "combined",
    train_ids: Sequence[str] | None = None,
    timeout_s: float | None = None,
    cache: dict | None = None,
) -> VocabularyBuild:
    """Embed task names and definitions on Ray and compute the prior over the training documents.

    Must run inside :func:`niclip_ray.runtime.ray_session`.

    Parameters
    ----------
    tasks : DataFrame
        ``task_id, name, definition`` in vocabulary order.
    text_features : path
        A text stage directory computed with the same model.
    model, base_model, max_length, batch_size, dtype
        As for :func:`niclip_ray.pipelines.text.run`; ``max_length`` defaults to the text stage's.
    alpha, prior_scale, prior_from
        See :func:`niclip_ray.features.vocabulary.build_vocabulary`.
    train_ids : sequence of str, optional
        Study ids of the training documents (default: every embedded document).
    timeout_s : float, optional
        Limit of the embedding task (see :func:`~niclip_ray.pipelines.text.embed_texts`).
    cache : dict, optional
        Task texts embedded by earlier builds, keyed by ``(model id, window, text)``; new
        ones are added. Builds of several vocabularies or text sections with one model share
        one dict, so each text is embedded once (the prior still comes from each build's
        documents).

    Raises
    ------
    InputError
        The documents were embedded with another model, or a task text cannot be embedded.
    """
    features = read_text_features(text_features, train_ids)
    spec = resolve_model(model, base_model=base_model)
    if spec.model_id != features.model_id:
        raise ParameterError(
            "text_features",
            f"{text_features} were embedded with {features.model_id!r}, not {spec.model_id!r}; "
            "the prior compares task and document embeddings of the same model",
        )
    window = max_length or stage_max_length(text_features)

    def embed_now(texts: Sequence[str]) -> EmbeddingResult:
        result, _ = embed_texts(
            texts,
            model=model,
            base_model=base_model,
            max_length=window,
            batch_size=batch_size,
            dtype=dtype,
            timeout_s=timeout_s,
        )
        return result

    def embed(texts: Sequence[str]) -> EmbeddingResult:
        if cache is None:
            return embed_now(texts)
        keys = [(spec.model_id, window, text) for text in texts]
        missing = [key for key in dict.fromkeys(keys) if key not in cache]
        if missing:
            fresh = embed_now([text for _, _, text in missing])
            cache.update({key: (fresh.vectors[i], int(fresh.n_tokens[i]), fresh.errors[i])
                          for i, key in enumerate(missing)})
        rows = [cache[key] for key in keys]
        return EmbeddingResult(np.stack([vector for vector, _, _ in rows]) if rows else np.zeros((0, 0), np.float32),
                               np.array([n for _, n, _ in rows], dtype=np.int64), [error for _, _, error in rows])

    vocabulary = embed_vocabulary(
        tasks, embed, features.embeddings, alpha=alpha, prior_scale=prior_scale, prior_from=prior_from
    )
    provenance = {
        "model_id": spec.model_id,
        "section": features.section,
        "alpha": alpha,
        "prior_scale": prior_scale,
        "prior_from": prior_from,
        "n_documents": len(features.study_ids),
        "n_failed_documents_excluded": features.n_failed,
        "train_ids": "given" if train_ids is not None else "all embedded documents",
    }
    return VocabularyBuild(vocabulary, provenance)
