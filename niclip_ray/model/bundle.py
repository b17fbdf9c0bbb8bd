"""Model bundles: one directory with everything decoding needs, checksummed.

Layout::

    BUNDLE/
      model.safetensors   CLIP weights in the reference key layout (niclip_ray.model.checkpoint)
      config.json         dims, dropout, logit_scale for decoding, text model id, atlas, mask,
                          training config/metrics when present
      vocabulary.parquet  term_id, name, definition, emb_* tensors, prior   (optional)
      ontology/           Cognitive Atlas snapshot in the native layout     (optional)
      mask.nii.gz         brain mask when the bundle carries its own        (optional)
      manifest.json       sha256 of every file above

Weights are stored as safetensors, so loading a bundle never unpickles anything; the
paper's ``.pth`` files become bundles through :mod:`niclip_ray.model.reference`.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from niclip_ray.atomic import storage_errors, temporary_name, write_json
from niclip_ray.errors import InputError
from niclip_ray.model.checkpoint import (
    LOGIT_SCALE,
    CheckpointDims,
    canonical_state_dict,
    checkpoint_dims,
    load_checkpoint,
)
from niclip_ray.model.vocabulary import EMBEDDING_COLUMNS, available_embeddings, read_vocabulary, write_vocabulary
from niclip_ray.ontology.core import Ontology, read_native, save_ontology
from niclip_ray.ontology.vocab import check_vocabulary_order

FORMAT = "niclip-bundle"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
VOCABULARY = "vocabulary.parquet"
ONTOLOGY = "ontology"
MASK = "mask.nii.gz"
MANIFEST = "manifest.json"
#: Optional config key: fingerprint of the text model's files
#: (:func:`niclip_ray.features.text_fingerprint.text_model_sha256`). Older bundles lack it and
#: are checked on ``text_model_id`` alone.
TEXT_MODEL_SHA256 = "text_model_sha256"
#: Largest decoding scale a bundle or ``--logit-scale`` may give. The reference decodes with 10
#: or 20 and CLIP clamps its own scale at 100; far above, the softmax over tasks underflows
#: (every likelihood 0) and posteriors become NaN.
MAX_LOGIT_SCALE = 1000.0
#: Config entries that must be whole numbers when present (they are checked against the weights).
WHOLE_NUMBER_KEYS = ("text_dim", "image_dim", "embed_dim", "n_image_blocks", "n_text_blocks", "atlas_dim")


@dataclass
class Bundle:
    """A loaded (or in-memory) model bundle.

    Attributes
    ----------
    state_dict : dict of str to torch.Tensor
        CLIP weights in the canonical reference key layout (float32, CPU).
    config : dict
        ``config.json`` contents; always holds the :class:`~niclip_ray.model.checkpoint.CheckpointDims`.
    vocabulary : DataFrame, optional
        See :mod:`niclip_ray.model.vocabulary`.
    ontology : Ontology, optional
        Its task order equals the vocabulary order.
    path : Path, optional
        Directory it was loaded from (None for an in-memory bundle).
    mask_path : Path, optional
        The bundle's own brain mask file, if it carries one.
    """

    state_dict: dict[str, torch.Tensor]
    config: dict
    vocabulary: pd.DataFrame | None = None
    ontology: Ontology | None = None
    path: Path | None = None
    mask_path: Path | None = None
    checksums: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dict = canonical_state_dict(self.state_dict)
        dims = checkpoint_dims(self.state_dict)
        check_numbers(self.config, self.state_dict, f"bundle {self.path}" if self.path is not None else "the bundle")
        self.config = config_with_dims(self.config, dims)
        check_parts(self.config, self.vocabulary, self.ontology)

    @property
    def logit_scale(self) -> float:
        """Scale used for decoding: ``config['logit_scale']``, else the learned value."""
        value = self.config.get("logit_scale")
        if value is None:
            value = float(self.state_dict[LOGIT_SCALE])
        return float(value)

    def require_vocabulary(self) -> pd.DataFrame:
        """The vocabulary, or an error telling how to attach one."""
        if self.vocabulary is None:
            where = self.path or "this bundle"
            raise InputError(
                f"{where} has no vocabulary; attach one with "
                f"'niclip-ray model attach-vocabulary {where} --vocabulary vocabulary.parquet'"
            )
        return self.vocabulary


def logit_scale_problem(value) -> str | None:
    """What is wrong with ``value`` as a decoding scale (None when nothing is).

    A scale is a finite number above 0 and at most :data:`MAX_LOGIT_SCALE`; NaN, infinite,
    zero or negative scales give NaN probabilities or ranks in reverse.
    """
    if not _is_number(value):
        return f"must be a number, got {value!r}"
    if not 0 < value <= MAX_LOGIT_SCALE:
        return f"must be a finite number above 0 and at most {MAX_LOGIT_SCALE:g}, got {float(value):g}"
    return None


def check_numbers(config: dict, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """Check a bundle's numbers: config entries in range, weights finite, a usable decoding scale.

    The decoding scale is ``config['logit_scale']`` or, when that is None, the learned one
    (:func:`logit_scale_problem`); ``dropout`` is in [0, 1); dimensions are whole numbers.

    Raises
    ------
    InputError
        Naming ``where`` (the bundle) and the entry or weights at fault.
    """
    for key in WHOLE_NUMBER_KEYS:
        value = config.get(key)
        if value is not None and not (_is_number(value) and float(value).is_integer()):
            raise InputError(f"{where}: config {key} must be a whole number, got {value!r}")
    dropout = config.get("dropout")
    if dropout is not None and not (_is_number(dropout) and 0 <= dropout < 1):
        raise InputError(f"{where}: config dropout must be a number in [0, 1), got {dropout!r}")
    bad = [key for key, value in state_dict.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise InputError(f"{where}: the weights {bad[:5]} hold NaN or infinite values (a diverged or damaged model)")
    if config.get("logit_scale") is not None:
        which, problem = "config logit_scale", logit_scale_problem(config["logit_scale"])
    else:
        which = "the learned logit_scale (used for decoding: the config sets none)"
        problem = logit_scale_problem(float(state_dict[LOGIT_SCALE]))
    if problem:
        raise InputError(f"{where}: {which} {problem}")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def config_with_dims(config: dict, dims: CheckpointDims) -> dict:
    """``config`` with the dimensions of the weights filled in.

    Raises
    ------
    InputError
        When ``config`` states other dimensions, or an ``atlas_dim`` the image head does not take.
    """
    for key, value in dims.as_config().items():
        if config.get(key) is not None and int(config[key]) != value:
            raise InputError(f"config says {key}={config[key]} but the weights have {value}")
    if config.get("atlas_dim") is not None and int(config["atlas_dim"]) != dims.image_dim:
        raise InputError(f"config atlas_dim={config['atlas_dim']} but the image head takes {dims.image_dim} inputs")
    return {**config, **dims.as_config()}


def check_parts(config: dict, vocabulary: pd.DataFrame | None, ontology: Ontology | None) -> None:
    """Check that vocabulary embeddings fit the text head and the ontology fits the vocabulary.

    Raises
    ------
    InputError
        On a width mismatch or a vocabulary/ontology order mismatch.
    """
    if vocabulary is not None:
        for kind in available_embeddings(vocabulary):
            width = len(vocabulary[EMBEDDING_COLUMNS[kind]].iloc[0])
            if width != config["text_dim"]:
                raise InputError(
                    f"vocabulary {kind} embeddings are {width}-d but the text head takes {config['text_dim']}-d input"
                )
        kind = config.get("vocabulary_embedding", "combined")
        if kind not in available_embeddings(vocabulary):
            raise InputError(
                f"config asks for {kind!r} vocabulary embeddings; the vocabulary has {available_embeddings(vocabulary)}"
            )
    if ontology is not None and vocabulary is not None:
        check_vocabulary_order(vocabulary["name"].tolist(), ontology)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def _write_manifest(root: Path) -> dict[str, str]:
    sums = {p.relative_to(root).as_posix(): _sha256(p) for p in _bundle_files(root)}
    write_json(root / MANIFEST, {"format": FORMAT, "version": 1, "sha256": sums}, indent=2, sort_keys=True)
    return sums


def verify_manifest(root: Path) -> dict[str, str]:
    """Check every file against ``manifest.json``.

    Raises
    ------
    InputError
        When the manifest is missing, a file is missing, added or altered.
    """
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{root} is not a model bundle (no {MANIFEST})")
    try:
        recorded = json.loads(manifest.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest} is malformed: {exc}") from exc
    present = {p.relative_to(root).as_posix() for p in _bundle_files(root)}
    missing = sorted(set(recorded) - present)
    extra = sorted(present - set(recorded))
    if missing or extra:
        raise InputError(f"bundle {root} does not match its manifest: missing {missing}, unlisted {extra}")
    altered = [name for name, digest in recorded.items() if _sha256(root / name) != digest]
    if altered:
        raise InputError(f"bundle {root}: checksum mismatch for {altered} (file altered or corrupt)")
    return recorded


def _tensors_for_safetensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        tensor = torch.as_tensor(value).detach().to("cpu")
        out[key] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous().clone()
    return out


def save_bundle(
    out_dir: str | Path,
    state_dict: dict[str, torch.Tensor],
    config: dict,
    vocabulary: pd.DataFrame | None = None,
    ontology: Ontology | None = None,
    *,
    mask_file: str | Path | None = None,
) -> Path:
    """Write a model bundle directory.

    Parameters
    ----------
    out_dir : path
        Target directory; created, or replaced if it already holds a bundle.
    state_dict : dict of str to Tensor
        CLIP weights in the reference key layout.
    config : dict
        Any of ``dropout``, ``logit_scale`` (decoding scale; None = learned), ``text_model_id``,
        ``text_model_sha256`` (:data:`TEXT_MODEL_SHA256`), ``atlas_id``, ``atlas_dim``, ``mask``, ``vocabulary_embedding``, ``training``,
        ``metrics``. Dimensions are filled in from the weights.
    vocabulary : DataFrame, optional
        May be attached later with :func:`attach_vocabulary`.
    ontology : Ontology, optional
        Snapshot whose task order equals the vocabulary order.
    mask_file : path, optional
        A brain mask NIfTI copied into the bundle; ``config['mask']`` then points at it.

    Returns
    -------
    Path
        The bundle directory.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise InputError(f"{out_dir} exists and is not a model bundle; choose an empty or new directory")
    bundle = Bundle(state_dict, dict(config), vocabulary, ontology)  # validates and canonicalises before writing
    config = {"format": FORMAT, "version": 1, **bundle.config}
    staging = temporary_name(out_dir)  # the whole bundle is written there, then renamed
    with storage_errors(out_dir):
        staging.mkdir(parents=True)
        try:
            save_file(_tensors_for_safetensors(bundle.state_dict), str(staging / WEIGHTS))
            if mask_file is not None:
                shutil.copyfile(mask_file, staging / MASK)
                config["mask"] = MASK
            write_json(staging / CONFIG, config, indent=2, sort_keys=True, default=_json_default)
            if vocabulary is not None:
                write_vocabulary(vocabulary, staging / VOCABULARY)
            if ontology is not None:
                save_ontology(ontology, staging / ONTOLOGY)
            _write_manifest(staging)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle directory.

    Raises
    ------
    InputError
        On a missing bundle, checksum mismatch, missing reference keys, shape mismatches, or
        numbers out of range (:func:`check_numbers`).
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"model bundle {root} does not exist or is not a directory")
    checksums = verify_manifest(root)
    try:
        config = json.loads((root / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {root / CONFIG}: {exc}") from exc
    state_dict = load_checkpoint(root / WEIGHTS)
    vocabulary = read_vocabulary(root / VOCABULARY) if (root / VOCABULARY).is_file() else None
    ontology = read_native(root / ONTOLOGY) if (root / ONTOLOGY).is_dir() else None
    mask_path = root / MASK if (root / MASK).is_file() else None
    config = {k: v for k, v in config.items() if k not in ("format", "version")}
    return Bundle(state_dict, config, vocabulary, ontology, path=root, mask_path=mask_path, checksums=checksums)


def attach_vocabulary(path: str | Path, vocabulary: pd.DataFrame, ontology: Ontology | None = None) -> Bundle:
    """Add (or replace) a bundle's vocabulary and, optionally, its ontology snapshot.

    The bundle is verified first and rewritten through :func:`save_bundle`, so the
    manifest stays consistent. Returns the reloaded bundle.
    """
    bundle = load_bundle(path)
    ontology = ontology if ontology is not None else bundle.ontology
    mask_copy = None
    if bundle.mask_path is not None:  # the bundle directory is replaced: keep its mask aside
        mask_copy = bundle.path.with_name(f".{bundle.path.name}.{uuid.uuid4().hex}.{MASK}")
        shutil.copyfile(bundle.mask_path, mask_copy)
    try:
        save_bundle(bundle.path, bundle.state_dict, bundle.config, vocabulary, ontology, mask_file=mask_copy)
    finally:
        if mask_copy is not None:
            mask_copy.unlink(missing_ok=True)
    return load_bundle(path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in config.json")
