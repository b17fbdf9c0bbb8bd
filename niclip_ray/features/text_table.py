"""The text stage's output read back as a matrix: :func:`read_text_features` (no Ray).

The text stage (:mod:`niclip_ray.pipelines.text`) writes ``part-NNNNN.parquet`` files of
``study_id, section, embedding, model_id, error``; the vocabulary stage and the retrieval
evaluation read them through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from niclip_ray.errors import InputError, ParameterError
from niclip_ray.tables import read_parts, tensor_to_numpy


@dataclass
class TextFeatures:
    """Successfully embedded documents of a text stage directory."""

    study_ids: list[str]
    embeddings: np.ndarray  # (N, D) float32
    model_id: str
    section: str
    n_failed: int  # rows with an error, left out


def read_text_features(text_features: str | Path, train_ids: Sequence[str] | None = None) -> TextFeatures:
    """Read the embeddings written by the text stage, optionally only the training documents.

    Parameters
    ----------
    text_features : path
        The text stage directory.
    train_ids : sequence of str, optional
        Study ids of the documents to keep (default: every embedded document).

    Raises
    ------
    InputError
        No part files, several models or sections mixed, training ids unknown to the stage,
        or no successfully embedded document left.
    """
    try:
        table = read_parts(text_features, columns=["study_id", "section", "embedding", "model_id", "error"])
    except FileNotFoundError as exc:
        raise ParameterError("text_features", f"{text_features}: {exc}") from exc
    for column in ("model_id", "section"):
        values = pc.unique(table[column]).to_pylist()
        if len(values) != 1:
            raise ParameterError("text_features", f"{text_features} mixes several {column}s: {values}")
    ids = table["study_id"].to_pylist()
    failed = np.array([bool(e) for e in table["error"].to_pylist()])
    keep = ~failed
    if train_ids is not None:
        wanted = {str(t) for t in train_ids}
        unknown = sorted(wanted - set(ids))
        if unknown:
            raise InputError(f"{len(unknown)} training ids are not in {text_features} (e.g. {', '.join(unknown[:5])})")
        keep &= np.array([sid in wanted for sid in ids])
        failed &= np.array([sid in wanted for sid in ids])
    if not keep.any():
        raise ParameterError("text_features", f"{text_features} holds no successfully embedded document to use")
    matrix = tensor_to_numpy(table["embedding"])[keep]
    return TextFeatures(
        [sid for sid, k in zip(ids, keep) if k],
        matrix,
        table["model_id"][0].as_py(),
        table["section"][0].as_py(),
        int(failed.sum()),
    )
