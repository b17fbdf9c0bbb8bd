"""Fixtures: tiny image/text feature tables in the feature stages' Parquet layout."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from niclip_ray.tables import tensor_array


def _write_features(root: Path, images: np.ndarray, texts: np.ndarray, ids: list[str], section: str = "body",
                   image_errors: dict[str, str] | None = None, text_errors: dict[str, str] | None = None,
                   model_id: str = "tiny-llm", parts: int = 2) -> tuple[Path, Path]:
    """Write ``root/images`` and ``root/text`` as ``part-*.parquet`` files."""
    image_errors, text_errors = image_errors or {}, text_errors or {}
    for name, vectors, errors, extra in (
        ("images", images, image_errors, {}),
        ("text", texts, text_errors, {"section": section, "model_id": model_id}),
    ):
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        for p, chunk in enumerate(np.array_split(np.arange(len(ids)), parts)):
            sub_ids = [ids[i] for i in chunk]
            valid = np.array([s not in errors for s in sub_ids])
            columns = {
                "study_id": pa.array(sub_ids),
                "embedding": tensor_array(vectors[chunk], valid=valid),
                "error": pa.array([errors.get(s) for s in sub_ids], pa.string()),
            }
            columns.update({k: pa.array([v] * len(sub_ids)) for k, v in extra.items()})
            pq.write_table(pa.table(columns), out / f"part-{p:05d}.parquet")
    return root / "images", root / "text"


@pytest.fixture
def write_features():
    """The feature-table writer (root, images, texts, ids, ...) -> (images_dir, text_dir)."""
    return _write_features
