"""Output files written whole or not at all: a temporary name in the same directory, then a rename.

Every file a command writes (CSV, JSON, reports, plots, index and bundle files, Parquet
parts) goes through :func:`replacing`: the writer fills a hidden temporary file next to
the target, and :func:`os.replace` gives it the final name only once it is complete. A
full disk or a killed process leaves the final name as it was (absent, or the previous
version), never a 0-byte or truncated file; the temporary file is removed on error.

A disk that is full, over quota or read-only becomes an :class:`~niclip_ray.errors.OutputError`
naming the file (:func:`storage_errors`), which the CLI prints as one line, exit 1.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from niclip_ray.errors import OutputError, ParameterError

#: ``errno`` values meaning the disk cannot take the file: full, over quota, read-only.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def storage_message(exc: OSError, path: str | os.PathLike | None) -> str:
    """``cannot write PATH: No space left on device`` (the path the system named when ``path`` is None)."""
    target = path if path is not None else exc.filename
    return f"cannot write {target if target is not None else 'an output file'}: {exc.strerror or exc}"


@contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full, over-quota or read-only disk met inside the block into an error naming ``path``.

    Raises
    ------
    OutputError
        When the block raises an :class:`OSError` whose ``errno`` is in :data:`STORAGE_ERRNOS`.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise OutputError(storage_message(exc, path)) from exc


def temporary_name(path: Path) -> Path:
    """A hidden, unique name next to ``path`` that keeps its suffixes (writers infer formats from them)."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` when the block ends without error.

    The parent directory is created. On error the temporary file is removed and ``path``
    is left as it was.

    Raises
    ------
    OutputError
        When the disk is full, over quota or read-only (naming ``path``).

    Examples
    --------
    >>> with replacing(out / "table.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)
    """
    path = Path(path)
    tmp = temporary_name(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`; returns the path."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, value, **dumps_options) -> Path:
    """Write ``value`` as JSON (``json.dumps(value, **dumps_options)``) through :func:`replacing`."""
    return write_text(path, json.dumps(value, **dumps_options))


def write_csv(path: str | os.PathLike, frame, float_format: str | None = None) -> Path:
    """Write a DataFrame as CSV without its index through :func:`replacing`; returns the path."""
    with replacing(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)
    return Path(path)


def make_dir(path: str | os.PathLike, param: str = "out_dir") -> Path:
    """Create the output directory ``path`` (and its parents) unless it exists.

    Raises
    ------
    ParameterError
        When ``path`` or one of its parents is a file (named after ``param``, ``--out`` in the CLI).
    OutputError
        When the disk is read-only, full or over quota.
    """
    path = Path(path)
    try:
        with storage_errors(path):
            path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise ParameterError(param, f"must be a directory, but {blocking} is a file") from None
    return path
