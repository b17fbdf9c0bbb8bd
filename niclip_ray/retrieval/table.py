"""The study index: one row per study with its image and text latents, and where it was used.

Index directory (written by :mod:`niclip_ray.pipelines.index`)::

    INDEX/part-NNNNN.parquet   the rows below, sorted by study_id
    INDEX/index.json           bundle digest, text model id and sha256, atlas id, section

Columns of the part files:

``study_id``      string
``pmid``          string (empty when unknown)
``doi``           string (empty when unknown; indexes built before it had none: read as empty)
``title``         string (in full)
``fold``          ``train``, ``val`` or ``test`` as the bundle's training split records it;
                  ``none`` when the bundle records no split or the study was not in it
``image_latent``  ``arrow.fixed_shape_tensor[float, [D]]``: CLIP image head of the study's
                  L2-normalised atlas coefficients (unit vector); null when failed
``text_latent``   the same for the text head and its text embedding
``coefficients``  ``arrow.fixed_shape_tensor[float, [dim]]``: the raw atlas coefficients of
                  the study's MKDA map (the ridge targets)
``error``         empty, or why the study has no latents (no image features, failed text, ...)
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from niclip_ray.corpus import load_corpus
from niclip_ray.errors import InputError
from niclip_ray.tables import error_array, part_files, read_parquet_checked, read_parts, tensor_array, tensor_to_numpy
from niclip_ray.vectors import l2_normalise

INDEX_META = "index.json"
FOLDS = ("train", "val", "test")
NO_FOLD = "none"


def _feature_rows(directory: Path, what: str, section: str | None = None) -> tuple[dict, list[str]]:
    """``study_id -> (part file, row)`` of the usable rows of a feature stage, and the model ids seen."""
    files = part_files(directory)
    if not files:
        raise InputError(f"{what} directory {directory} holds no part-*.parquet files")
    where, model_ids = {}, set()
    for path in files:
        columns = ["study_id", "error"] + (["section", "model_id"] if section is not None else [])
        table = read_parquet_checked(path, columns=columns)
        ok = pc.equal(pc.fill_null(table["error"], ""), "")
        if section is not None:
            ok = pc.and_(ok, pc.equal(table["section"], section))
            model_ids |= set(table.filter(ok)["model_id"].to_pylist())
        for row, (sid, good) in enumerate(zip(table["study_id"].to_pylist(), ok.to_pylist())):
            if good:
                where[str(sid)] = (str(path), row)
    return where, sorted(model_ids)


@dataclass(frozen=True)
class IndexPlan:
    """What :func:`index_items` found: the manifest, and the text model of the features."""

    items: list[dict]
    text_model_ids: list[str]


def _text(value) -> str:
    """A corpus cell as text: empty for a missing value."""
    return "" if value is None or value != value else str(value)


def index_items(corpus_dir: str | Path, features_dir: str | Path, split: dict | None, section: str) -> IndexPlan:
    """One manifest item per corpus study: ids, title, fold, and where its features are.

    Parameters
    ----------
    corpus_dir : path
    features_dir : path
        Holds ``images/`` and ``text/`` stage directories.
    split : dict, optional
        The bundle's ``training.split`` (``train``/``val``/``test`` lists of study ids).
    section : str
        Text section to use.
    """
    features_dir = Path(features_dir)
    studies = load_corpus(corpus_dir).studies
    images, _ = _feature_rows(features_dir / "images", "image features")
    texts, model_ids = _feature_rows(features_dir / "text", "text features", section)
    fold_of = {str(sid): part for part in FOLDS for sid in (split or {}).get(part, [])}
    items = []
    for row in studies.itertuples():
        sid = str(row.study_id)
        missing = [what for what, rows in (("image features", images), (f"{section} text features", texts))
                   if sid not in rows]
        items.append({
            "study_id": sid,
            "pmid": _text(row.pmid),
            "doi": _text(getattr(row, "doi", None)),
            "title": "" if row.title is None or row.title != row.title else str(row.title),
            "fold": fold_of.get(sid, NO_FOLD),
            "image": images.get(sid),
            "text": texts.get(sid),
            "input_error": f"no usable {' or '.join(missing)}" if missing else "",
        })
    return IndexPlan(items, model_ids)


def _gather(items: list[dict], key: str) -> np.ndarray:
    """The ``embedding`` of each item's ``(part, row)`` under ``key``, reading each part file once."""
    by_part = defaultdict(list)
    for i, item in enumerate(items):
        by_part[item[key][0]].append((i, item[key][1]))
    out = None
    for path, pairs in by_part.items():
        vectors = tensor_to_numpy(read_parquet_checked(path, columns=["embedding"])["embedding"])
        if out is None:
            out = np.zeros((len(items), vectors.shape[1]), dtype=np.float32)
        for i, row in pairs:
            out[i] = vectors[row]
    return out


def index_rows(items: list[dict], model) -> pa.Table:
    """Pure per-shard function: latents of the items' studies under a CLIP ``model``.

    Returns
    -------
    pyarrow.Table
        The index columns, one row per item, in item order.
    """
    good = [i for i, item in enumerate(items) if not item["input_error"]]
    n = len(items)
    image_dim, text_dim = model.image_dim, model.text_dim
    coefficients = np.zeros((n, image_dim), dtype=np.float32)
    image_latent = np.zeros((n, image_dim), dtype=np.float32)
    text_latent = np.zeros((n, image_dim), dtype=np.float32)
    errors = [item["input_error"] for item in items]
    if good:
        chosen = [items[i] for i in good]
        betas, texts = _gather(chosen, "image"), _gather(chosen, "text")
        if betas.shape[1] != image_dim or texts.shape[1] != text_dim:
            raise InputError(
                f"features are {betas.shape[1]}-d (image) and {texts.shape[1]}-d (text) but the bundle's heads "
                f"take {image_dim}-d and {text_dim}-d"
            )
        with torch.no_grad():
            image_latent[good] = model.encode_image(torch.from_numpy(l2_normalise(betas))).numpy()
            text_latent[good] = model.encode_text(torch.from_numpy(l2_normalise(texts))).numpy()
        coefficients[good] = betas
    ok = np.array([not e for e in errors], dtype=bool)
    return pa.table({
        "study_id": pa.array([item["study_id"] for item in items], pa.string()),
        "pmid": pa.array([item["pmid"] for item in items], pa.string()),
        "doi": pa.array([item.get("doi", "") for item in items], pa.string()),
        "title": pa.array([item["title"] for item in items], pa.string()),
        "fold": pa.array([item["fold"] for item in items], pa.string()),
        "image_latent": tensor_array(image_latent, valid=ok),
        "text_latent": tensor_array(text_latent, valid=ok),
        "coefficients": tensor_array(coefficients, valid=ok),
        "error": error_array(errors),
    })


@dataclass
class StudyIndex:
    """The usable rows of an index directory, as arrays.

    Attributes
    ----------
    study_ids, pmids, dois, titles, folds : (n,) object arrays of str
    image_latents, text_latents : (n, D) float32, unit rows
    coefficients : (n, dim) float32
    meta : dict
        ``index.json``.
    n_failed : int
        Rows left out for their error.
    """

    study_ids: np.ndarray
    pmids: np.ndarray
    dois: np.ndarray
    titles: np.ndarray
    folds: np.ndarray
    image_latents: np.ndarray
    text_latents: np.ndarray
    coefficients: np.ndarray
    meta: dict
    n_failed: int

    def __len__(self) -> int:
        return len(self.study_ids)


def read_index(directory: str | Path) -> StudyIndex:
    """Read an index directory.

    Raises
    ------
    InputError
        No part files or no ``index.json`` (not an index, or its build did not finish), or no usable row.
    """
    directory = Path(directory)
    meta_path = directory / INDEX_META
    try:
        table = read_parts(directory)
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise InputError(f"{directory} is not a finished study index ({exc}); run 'niclip-ray index build'") from exc
    ok = np.array([not e for e in table["error"].to_pylist()], dtype=bool)
    if not ok.any():
        raise InputError(f"study index {directory} holds no usable study")
    table = table.filter(pa.array(ok))

    def strings(name: str) -> np.ndarray:
        if name not in table.column_names:  # an index built before the column existed
            return np.full(table.num_rows, "", dtype=object)
        return np.array(table[name].to_pylist(), dtype=object)

    return StudyIndex(
        strings("study_id"), strings("pmid"), strings("doi"), strings("title"), strings("fold"),
        tensor_to_numpy(table["image_latent"]), tensor_to_numpy(table["text_latent"]),
        tensor_to_numpy(table["coefficients"]), meta, int((~ok).sum()),
    )
