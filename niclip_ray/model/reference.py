"""Turn the paper's loose files (model ``.pth``, vocabulary ``.txt``, ``.npy`` arrays) into a bundle.

:func:`bundle_from_reference` builds the :class:`~niclip_ray.model.bundle.Bundle` in
memory (``niclip-ray model import-reference`` then saves it; a one-shot prediction can
use it directly). File names follow the reference's conventions, e.g.
``vocabulary-cogatlasred_task-combined_embedding-BrainGPT-7B-v0.2.npy``: the
``task-{names|definitions|combined}`` tag says which embedding column it fills and the
``embedding-{Model}`` tag names the text model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from niclip_ray.errors import InputError
from niclip_ray.model.bundle import Bundle
from niclip_ray.model.checkpoint import checkpoint_dims, load_checkpoint
from niclip_ray.model.vocabulary import make_vocabulary
from niclip_ray.ontology import check_vocabulary_order, load_ontology

_KIND = re.compile(r"task-(names|definitions|combined)")
_MODEL = re.compile(r"embedding-([A-Za-z0-9.\-]+?)(?:_|\.npy$|$)")


def read_vocabulary_txt(path: str | Path) -> list[str]:
    """Vocabulary names, one per line, in file order (blank lines ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read vocabulary {path}: {exc}") from exc
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise InputError(f"vocabulary {path} is empty")
    return names


def read_array(path: str | Path, what: str) -> np.ndarray:
    """Load a ``.npy`` array without pickles."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc


def read_prior(path: str | Path, names: list[str]) -> np.ndarray:
    """The prior as ``(V,)`` in vocabulary order, from ``.npy`` or the reference's ``name, prior`` CSV."""
    path = Path(path)
    if path.suffix == ".csv":
        try:
            table = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"cannot read prior {path}: {exc}") from exc
        if not {"name", "prior"} <= set(table.columns):
            raise InputError(f"prior {path} needs the columns name, prior")
        values = pd.to_numeric(table["prior"], errors="coerce")
        if values.isna().any():
            raise InputError(f"prior {path} has non-numeric values at rows {values.index[values.isna()][:5].tolist()}")
        by_name = dict(zip(table["name"].astype(str), values.astype(float)))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise InputError(f"prior {path} has no value for {len(missing)} terms (e.g. {missing[:3]})")
        return np.array([by_name[n] for n in names], dtype=np.float64)
    prior = read_array(path, "prior").astype(np.float64)
    if prior.ndim != 1 or prior.shape[0] != len(names):
        raise InputError(f"prior {path} has shape {prior.shape}; expected ({len(names)},) for the vocabulary")
    return prior


def bundle_from_reference(
    model: str | Path,
    vocabulary: str | Path,
    vocabulary_emb: str | Path,
    vocabulary_prior: str | Path,
    *,
    cognitiveatlas: str | Path | None = None,
    reduced: bool = True,
    dim: int | None = None,
    mask: str | Path | None = None,
    logit_scale: float | None = 20.0,
    embedding_kind: str | None = None,
    text_model_id: str | None = None,
    atlas_dir: str | Path | None = None,
) -> Bundle:
    """Build an in-memory bundle from the reference's artifacts.

    Parameters
    ----------
    model : path
        CLIP state dict (``.pth``, read with ``weights_only=True``; or ``.safetensors``).
    vocabulary : path
        ``.txt`` with one task name per line (order = embedding order).
    vocabulary_emb : path
        ``(V, D)`` ``.npy`` embeddings of the vocabulary.
    vocabulary_prior : path
        ``(V,)`` ``.npy`` prior, or the ``name, prior`` CSV.
    cognitiveatlas : path or "builtin", optional
        Ontology source (see :func:`niclip_ray.ontology.load_ontology`); its task order must
        equal the vocabulary order.
    reduced : bool
        Reduced or full Cognitive Atlas (reference directories only).
    dim : int, optional
        DiFuMo dimension (default: the image head's input width).
    mask : path, optional
        Brain mask NIfTI defining the resampling grid (the paper's ``MNI152_2x2x2_brainmask``).
    logit_scale : float, optional
        Decoding scale stored in the bundle (the paper's jobs use 20; None = learned value).
    embedding_kind : {"names", "definitions", "combined"}, optional
        Default: read from the embedding file name, else ``combined``.
    text_model_id : str, optional
        Default: the ``embedding-{Model}`` tag of the embedding file name.
    atlas_dir : path, optional
        nilearn data directory that must hold the real DiFuMo at ``dim`` (checked now, so
        that decoding later does not find only a stand-in).

    Raises
    ------
    InputError
        On unreadable files, inconsistent sizes, or a vocabulary whose order differs from
        the ontology's.
    ConfigError
        When ``atlas_dir`` holds no real DiFuMo of dimension ``dim``.
    """
    state = load_checkpoint(model)
    dims = checkpoint_dims(state)
    names = read_vocabulary_txt(vocabulary)
    emb = read_array(vocabulary_emb, "vocabulary embeddings")
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise InputError(
            f"vocabulary embeddings {vocabulary_emb} have shape {emb.shape}; expected ({len(names)}, D) "
            f"for the {len(names)} names in {vocabulary}"
        )
    prior = read_prior(vocabulary_prior, names)
    emb_name = Path(vocabulary_emb).name
    kind = embedding_kind or (m.group(1) if (m := _KIND.search(emb_name)) else "combined")
    ontology = None
    term_ids, definitions = None, None
    if cognitiveatlas is not None:
        ontology = load_ontology(cognitiveatlas, reduced=reduced)
        check_vocabulary_order(names, ontology, source=str(vocabulary))
        term_ids, definitions = ontology.tasks["task_id"].tolist(), ontology.tasks["definition"].tolist()
    table = make_vocabulary(names, {kind: emb}, prior, term_ids=term_ids, definitions=definitions)
    dim = int(dim) if dim is not None else dims.image_dim
    if atlas_dir is not None:
        from niclip_ray.atlas.difumo import load_atlas

        load_atlas(dim=dim, data_dir=atlas_dir, allow_standin=False)  # ConfigError unless real DiFuMo
    if mask is not None and not Path(mask).is_file():
        raise InputError(f"mask {mask} does not exist")
    config = {
        "logit_scale": None if logit_scale is None else float(logit_scale),
        "vocabulary_embedding": kind,
        "text_model_id": text_model_id or (m.group(1) if (m := _MODEL.search(emb_name)) else None),
        "atlas_id": f"difumo{dim}-2mm",
        "atlas_dim": dim,
        "mask": Path(mask).name if mask is not None else "mni152_2mm",
        "source": {"model": Path(model).name, "vocabulary": Path(vocabulary).name,
                   "vocabulary_emb": emb_name, "vocabulary_prior": Path(vocabulary_prior).name},
    }
    return Bundle(state, config, table, ontology, mask_path=Path(mask) if mask is not None else None)
