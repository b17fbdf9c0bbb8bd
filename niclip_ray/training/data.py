"""Paired training data: image and text features joined on ``study_id``.

Inputs are the feature stages' Parquet outputs (``docs/architecture.md``, "Contracts"):

* ``features/images/part-*.parquet``: study_id, embedding[dim], error
* ``features/text/part-*.parquet``: study_id, section, embedding[D], model_id, error

Rows that failed upstream (non-empty ``error``, null or non-finite embedding, zero
vector) are skipped and counted; studies present on one side only are reported. Both
sides are L2-normalised, as the reference trains on normalised embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from niclip_ray.errors import InputError
from niclip_ray.tables import read_parts, tensor_to_numpy
from niclip_ray.vectors import l2_normalise


@dataclass
class PairedFeatures:
    """Matched image/text feature rows, one per study, sorted by study_id.

    Attributes
    ----------
    study_ids : list of str
    images : (n, image_dim) float32, unit rows
    texts : (n, text_dim) float32, unit rows
    section : str
    text_model_id : str or None
    atlas_id : str or None
        The image features' atlas, when the table records it.
    image_only, text_only : list of str
        Usable studies found on one side only.
    failed_images, failed_texts : int
        Rows skipped because they failed upstream or hold unusable vectors.
    """

    study_ids: list[str]
    images: np.ndarray
    texts: np.ndarray
    section: str
    text_model_id: str | None = None
    atlas_id: str | None = None
    image_only: list[str] = field(default_factory=list)
    text_only: list[str] = field(default_factory=list)
    failed_images: int = 0
    failed_texts: int = 0

    def __len__(self) -> int:
        return len(self.study_ids)


def _read(directory: Path, columns: list[str], what: str) -> pa.Table:
    if not Path(directory).is_dir():
        raise InputError(f"{what} directory {directory} does not exist")
    try:
        table = read_parts(directory)
    except FileNotFoundError as exc:
        raise InputError(f"{what} directory {directory} holds no part-*.parquet files") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{what} table in {directory} lacks column(s) {missing}")
    return table


def _distinct(table: pa.Table, column: str) -> list[str]:
    """Distinct non-empty values of an optional string column."""
    if column not in table.column_names:
        return []
    return sorted({str(v) for v in table.column(column).to_pylist() if v})


def _usable(table: pa.Table, what: str, directory: Path) -> tuple[list[str], np.ndarray, int]:
    """Study ids and vectors of rows that did not fail, plus the number skipped."""
    vectors = tensor_to_numpy(table.column("embedding"))
    errors = table.column("error").to_pylist() if "error" in table.column_names else [None] * len(table)
    ids = [str(s) for s in table.column("study_id").to_pylist()]
    finite = np.isfinite(vectors).all(axis=1) if vectors.size else np.zeros(len(ids), bool)
    nonzero = np.linalg.norm(np.nan_to_num(vectors), axis=1) > 0 if vectors.size else finite
    ok = np.array([not e for e in errors], dtype=bool) & finite & nonzero
    kept = [s for s, good in zip(ids, ok) if good]
    duplicates = sorted({s for s in kept if kept.count(s) > 1}) if len(set(kept)) != len(kept) else []
    if duplicates:
        raise InputError(f"{what} features in {directory} repeat study_id(s) {duplicates[:5]}")
    return kept, vectors[ok], int((~ok).sum())


def load_pairs(images_dir: str | Path, text_dir: str | Path, section: str = "body") -> PairedFeatures:
    """Join image and text features on study_id.

    Parameters
    ----------
    images_dir, text_dir : path
        Feature stage directories with ``part-*.parquet`` files.
    section : str
        Text section to use (``body`` or ``abstract``).

    Raises
    ------
    InputError
        Missing directories or columns, an absent section, several text models mixed,
        duplicate study ids, or no study present on both sides.
    """
    images_dir, text_dir = Path(images_dir), Path(text_dir)
    images = _read(images_dir, ["study_id", "embedding"], "image features")
    texts = _read(text_dir, ["study_id", "section", "embedding"], "text features")
    sections = sorted(set(texts.column("section").to_pylist()))
    if section not in sections:
        raise InputError(f"text features in {text_dir} have no section {section!r} (found {sections})")
    texts = texts.filter(pc.equal(texts.column("section"), section))
    model_ids = _distinct(texts, "model_id")
    if len(model_ids) > 1:
        raise InputError(f"text features in {text_dir} mix models {model_ids}; train on one model at a time")
    atlas_ids = _distinct(images, "atlas_id")
    if len(atlas_ids) > 1:
        raise InputError(f"image features in {images_dir} mix atlases {atlas_ids}; train on one atlas at a time")
    image_ids, image_vectors, failed_images = _usable(images, "image", images_dir)
    text_ids, text_vectors, failed_texts = _usable(texts, "text", text_dir)
    image_pos = {s: i for i, s in enumerate(image_ids)}
    text_pos = {s: i for i, s in enumerate(text_ids)}
    both = sorted(image_pos.keys() & text_pos.keys())
    if not both:
        raise InputError(
            f"no study has both image features ({images_dir}, {len(image_ids)} usable) and "
            f"{section} text features ({text_dir}, {len(text_ids)} usable)"
        )
    return PairedFeatures(
        study_ids=both,
        images=l2_normalise(image_vectors[[image_pos[s] for s in both]]),
        texts=l2_normalise(text_vectors[[text_pos[s] for s in both]]),
        section=section,
        text_model_id=model_ids[0] if model_ids else None,
        atlas_id=atlas_ids[0] if atlas_ids else None,
        image_only=sorted(image_pos.keys() - text_pos.keys()),
        text_only=sorted(text_pos.keys() - image_pos.keys()),
        failed_images=failed_images,
        failed_texts=failed_texts,
    )
