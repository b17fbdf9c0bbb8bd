"""The decoding vocabulary: Cognitive Atlas task names, their text embeddings and prior.

In memory a vocabulary is a pandas DataFrame with the columns of the
``vocabulary.parquet`` contract (``docs/architecture.md``, "Contracts"). Embedding columns hold one float32 vector per row (an
object column of 1-D arrays; ``None`` where that kind of embedding was not computed).
On disk they are Arrow fixed-shape float32 tensors (:func:`niclip_ray.tables.tensor_array`),
and how the vocabulary was built may ride along as JSON in the schema metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from niclip_ray.errors import InputError
from niclip_ray.tables import read_parquet_checked, tensor_array, tensor_to_numpy, write_parquet_atomic

#: Embedding columns, keyed by the reference's file-name tag (``task-{names|definitions|combined}``).
EMBEDDING_COLUMNS = {"names": "emb_name", "definitions": "emb_definition", "combined": "emb_combined"}
TEXT_COLUMNS = ("term_id", "name", "definition")
COLUMNS = (*TEXT_COLUMNS, *EMBEDDING_COLUMNS.values(), "prior")
#: Schema metadata key of the provenance (model, documents, alpha, ...) of a built vocabulary.
PROVENANCE_KEY = b"niclip.vocabulary"


def make_vocabulary(
    names: Sequence[str],
    embeddings: dict[str, np.ndarray],
    prior: np.ndarray,
    *,
    term_ids: Sequence[str] | None = None,
    definitions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Assemble a vocabulary frame from arrays.

    Parameters
    ----------
    names : sequence of str, length V
        Task names in vocabulary order.
    embeddings : dict
        Maps ``"names"``, ``"definitions"`` and/or ``"combined"`` to ``(V, D)`` arrays.
    prior : (V,) array
        Prior probability of each term.
    term_ids, definitions : sequence of str, optional
        Cognitive Atlas ids and definitions (default: the names, and empty strings).
    """
    n = len(names)
    frame = pd.DataFrame(
        {
            "term_id": [str(t) for t in term_ids] if term_ids is not None else [str(x) for x in names],
            "name": [str(x) for x in names],
            "definition": [str(d) for d in definitions] if definitions is not None else [""] * n,
        }
    )
    unknown = set(embeddings) - set(EMBEDDING_COLUMNS)
    if unknown:
        raise InputError(f"unknown embedding kinds {sorted(unknown)}; use {sorted(EMBEDDING_COLUMNS)}")
    for kind, column in EMBEDDING_COLUMNS.items():
        if kind in embeddings:
            matrix = np.asarray(embeddings[kind], dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[0] != n:
                raise InputError(f"{kind} embeddings have shape {matrix.shape}; expected ({n}, D) for {n} names")
            frame[column] = list(matrix)
        else:
            frame[column] = [None] * n
    prior = np.asarray(prior, dtype=np.float64).reshape(-1)
    if prior.shape[0] != n:
        raise InputError(f"the prior has {prior.shape[0]} values for {n} vocabulary names")
    frame["prior"] = prior
    validate_vocabulary(frame)
    return frame


def available_embeddings(vocabulary: pd.DataFrame) -> list[str]:
    """Embedding kinds (``names``/``definitions``/``combined``) present for every row."""
    return [
        kind
        for kind, col in EMBEDDING_COLUMNS.items()
        if col in vocabulary.columns and len(vocabulary) and vocabulary[col].map(lambda v: v is not None).all()
    ]


def embedding_matrix(vocabulary: pd.DataFrame, kind: str = "combined") -> np.ndarray:
    """The ``(V, D)`` float32 matrix of one embedding kind.

    Raises
    ------
    InputError
        When that kind is missing for some rows.
    """
    if kind not in EMBEDDING_COLUMNS:
        raise InputError(f"unknown embedding kind {kind!r}; use one of {sorted(EMBEDDING_COLUMNS)}")
    if kind not in available_embeddings(vocabulary):
        raise InputError(
            f"the vocabulary has no {kind!r} embeddings (available: {available_embeddings(vocabulary) or 'none'})"
        )
    return np.stack([np.asarray(v, dtype=np.float32) for v in vocabulary[EMBEDDING_COLUMNS[kind]]])


def validate_vocabulary(vocabulary: pd.DataFrame, source: str = "vocabulary") -> None:
    """Check columns, unique non-empty names, equal embedding widths and a usable prior.

    Raises
    ------
    InputError
        Naming ``source`` and the problem.
    """
    missing = [c for c in COLUMNS if c not in vocabulary.columns]
    if missing:
        raise InputError(f"{source} lacks columns {missing}")
    if len(vocabulary) < 2:
        raise InputError(f"{source} needs at least 2 terms, has {len(vocabulary)}")
    names = vocabulary["name"].astype(str)
    if (names.str.strip() == "").any():
        raise InputError(f"{source} has empty names at rows {np.flatnonzero(names.str.strip() == '')[:5].tolist()}")
    dupes = names[names.duplicated()].tolist()
    if dupes:
        raise InputError(f"{source} has duplicate names: {dupes[:5]}")
    for col in EMBEDDING_COLUMNS.values():
        widths = {np.asarray(v).shape for v in vocabulary[col] if v is not None}
        if len(widths) > 1:
            raise InputError(f"{source} column {col} mixes vector shapes {sorted(widths)}")
        if any(not np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in vocabulary[col] if v is not None):
            raise InputError(f"{source} column {col} holds NaN or Inf")
    if not available_embeddings(vocabulary):
        raise InputError(f"{source} has no complete embedding column ({', '.join(EMBEDDING_COLUMNS.values())})")
    prior = vocabulary["prior"].to_numpy(dtype=np.float64)
    if not np.isfinite(prior).all() or (prior < 0).any() or (prior >= 1).any() or prior.sum() <= 0:
        raise InputError(f"{source} prior must be finite, in [0, 1) and not all zero")


def vocabulary_to_table(vocabulary: pd.DataFrame) -> pa.Table:
    """Convert a vocabulary frame to Arrow with fixed-shape tensor embedding columns."""
    validate_vocabulary(vocabulary)
    columns: dict[str, pa.Array] = {c: pa.array(vocabulary[c].astype(str).tolist(), pa.string()) for c in TEXT_COLUMNS}
    for col in EMBEDDING_COLUMNS.values():
        rows = vocabulary[col].tolist()
        present = [r for r in rows if r is not None]
        dim = np.asarray(present[0]).shape[0] if present else 1
        valid = np.array([r is not None for r in rows])
        matrix = np.stack([np.asarray(r, dtype=np.float32) if r is not None else np.zeros(dim, np.float32) for r in rows])
        columns[col] = tensor_array(matrix, valid=valid)
    columns["prior"] = pa.array(vocabulary["prior"].to_numpy(dtype=np.float64))
    return pa.table(columns)


def write_vocabulary(vocabulary: pd.DataFrame, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``vocabulary.parquet`` atomically, with ``provenance`` (JSON) in the schema metadata."""
    table = vocabulary_to_table(vocabulary)
    if provenance is not None:
        metadata = {**(table.schema.metadata or {}), PROVENANCE_KEY: json.dumps(provenance).encode()}
        table = table.replace_schema_metadata(metadata)
    return write_parquet_atomic(table, path)


def read_vocabulary_provenance(path: str | Path) -> dict:
    """The provenance a vocabulary file was written with (empty if it has none)."""
    raw = (pq.read_schema(path).metadata or {}).get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def read_vocabulary(path: str | Path) -> pd.DataFrame:
    """Read a ``vocabulary.parquet`` into a validated frame.

    Raises
    ------
    InputError
        When the file is unreadable or breaks the contract.
    """
    if not Path(path).is_file():
        raise InputError(f"cannot read vocabulary {path}: no such file")
    table = read_parquet_checked(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"vocabulary {path} lacks columns {missing}")
    frame = pd.DataFrame({c: table[c].to_pylist() for c in TEXT_COLUMNS})
    for col in EMBEDDING_COLUMNS.values():
        matrix = tensor_to_numpy(table[col])
        valid = table[col].is_valid().to_numpy(zero_copy_only=False)
        frame[col] = [row if ok else None for row, ok in zip(matrix, valid)]
    frame["prior"] = table["prior"].to_numpy().astype(np.float64)
    validate_vocabulary(frame, source=f"vocabulary {path}")
    return frame
