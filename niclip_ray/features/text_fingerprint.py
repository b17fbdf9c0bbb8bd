"""The text model a bundle was trained with: its id, a fingerprint of its files, and the check.

A bundle records ``text_model_id`` (and, from now on, ``text_model_sha256``, see
:data:`niclip_ray.model.bundle.TEXT_MODEL_SHA256`). Latents are comparable only when
the text side was embedded by the very model the heads were trained on, so building an
index and embedding a query check both. Bundles written before the fingerprint existed
are checked on the id alone.

The fingerprint reads the model's files without loading them: small files (configs,
tokenizers, under :data:`WHOLE_FILE_LIMIT`) whole; weight files by their size and their
first and last :data:`EDGE_BYTES`, so a 7B model is fingerprinted in milliseconds and a
fine-tune of the same architecture (other weights, same size) still differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from niclip_ray.errors import InputError
from niclip_ray.features.text_models import ModelSpec, locate, resolve_model

#: Files up to this size are hashed whole.
WHOLE_FILE_LIMIT = 16 * 2**20
#: Bytes hashed at each end of a larger file.
EDGE_BYTES = 4 * 2**20


def _hash_file(digest, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}\x1f{size}\x1e".encode())
    with open(path, "rb") as fh:
        if size <= WHOLE_FILE_LIMIT:
            digest.update(fh.read())
            return
        digest.update(fh.read(EDGE_BYTES))
        fh.seek(size - EDGE_BYTES)
        digest.update(fh.read(EDGE_BYTES))


def _model_files(reference: str, what: str) -> list[Path]:
    files = locate(reference, what)
    if files.gguf_file:
        return [files.directory / files.gguf_file]
    return sorted(p for p in files.directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def text_model_sha256(model: str | ModelSpec) -> str:
    """Fingerprint (sha256 hex) of a text model's files: base model, then adapter if any.

    Raises
    ------
    InputError
        When the model's files are not on disk.
    """
    spec = model if isinstance(model, ModelSpec) else resolve_model(model)
    digest = hashlib.sha256()
    for reference, what in ((spec.base, "model"), (spec.adapter, "adapter")):
        if reference is None:
            continue
        digest.update(f"{what}\x1d".encode())
        for path in _model_files(reference, what):
            _hash_file(digest, path)
    return digest.hexdigest()


def check_text_model(config: dict, model_id: str | None, sha256: str | None, *, where: str) -> None:
    """Refuse text embedded by another model than the bundle's.

    Parameters
    ----------
    config : dict
        The bundle's config (``text_model_id``, optional ``text_model_sha256``).
    model_id, sha256 : str or None
        The model that embedded the text being used; ``sha256`` None when unknown.
    where : str
        What the text is ("text features in DIR", "the query"), for the message.

    Raises
    ------
    InputError
        When the ids differ, or both fingerprints are known and differ.
    """
    from niclip_ray.model.bundle import TEXT_MODEL_SHA256

    expected_id = config.get("text_model_id")
    if not expected_id:
        raise InputError("the bundle does not record its text model (config text_model_id); it cannot embed text")
    if model_id != expected_id:
        raise InputError(
            f"{where} come from text model {model_id!r}, but the bundle was trained on {expected_id!r}; "
            "embed the text with the bundle's model"
        )
    expected_sha = config.get(TEXT_MODEL_SHA256)
    if expected_sha and sha256 and sha256 != expected_sha:
        raise InputError(
            f"{where}: text model {model_id!r} on this machine has other files (sha256 {sha256[:12]}) than the one "
            f"the bundle was trained on ({expected_sha[:12]}); use the same model files"
        )
