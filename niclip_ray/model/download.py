"""Download one published file, resumably, and keep it only once its size and sha256 match.

The bytes go to ``<name>.part`` next to the target. A later try (or a rerun) asks for the
rest with an HTTP ``Range`` request and appends when the server answers ``206`` from the
right offset, or starts over when it answers ``200`` (the server ignored the range). The
file gets its final name only after its size and sha256 equal the published ones; a file
that does not match is removed and named in the error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import requests

from niclip_ray.atomic import storage_errors
from niclip_ray.errors import InputError
from niclip_ray.model.osf import OsfUnreachable, RemoteFile, get

#: Requests per file before giving up (each one resumes where the previous stopped).
TRIES = 3
#: Bytes per read; a dropped connection loses at most the read in progress.
CHUNK_BYTES = 1 << 16
#: ``on_bytes(path, done, total)``: progress of one file, in bytes.
OnBytes = Callable[[str, int, int], None]
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)")


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def is_verified(path: Path, size: int, sha256: str) -> bool:
    """Whether ``path`` is a file of ``size`` bytes whose SHA-256 is ``sha256``."""
    return path.is_file() and path.stat().st_size == size and sha256_of(path) == sha256


def part_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` gather until they are verified."""
    return dest.with_name(dest.name + ".part")


def fetch_file(remote: RemoteFile, dest: str | os.PathLike, on_bytes: OnBytes | None = None) -> bool:
    """Make ``dest`` the verified copy of ``remote``.

    Parameters
    ----------
    remote : RemoteFile
        The file and the size and sha256 OSF publishes for it.
    dest : path
        Final name of the file.
    on_bytes : callable, optional
        Called as ``on_bytes(remote.path, done, total)`` while bytes arrive.

    Returns
    -------
    bool
        True when downloaded now, False when ``dest`` was already verified.

    Raises
    ------
    InputError
        The download stopped short after :data:`TRIES` requests (rerun to resume), the
        server sent more bytes than published, or the sha256 differs (the bytes are removed).
    OsfUnreachable
        The download address cannot be reached.
    """
    dest = Path(dest)
    if is_verified(dest, remote.size, remote.sha256):
        return False
    part = part_path(dest)
    with storage_errors(part):
        dest.parent.mkdir(parents=True, exist_ok=True)
        failure = None
        for _ in range(TRIES):
            if _size(part) >= remote.size:
                break
            try:
                _receive(remote, part, on_bytes)
            except (requests.RequestException, OsfUnreachable) as exc:
                failure = exc
        return _keep(remote, part, dest, failure)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _receive(remote: RemoteFile, part: Path, on_bytes: OnBytes | None) -> None:
    """One request: append the missing bytes to ``part``, or rewrite it when the server ignores Range."""
    have = _size(part)
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    with get(remote.url, f"file {remote.osf_id} ({remote.path})", headers, stream=True) as response:
        start = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status_code == 206 and start and int(start.group(1)) == have:
            mode = "ab"
        elif response.status_code == 200:
            mode, have = "wb", 0
        else:
            raise InputError(f"unexpected answer {response.status_code} for {remote.path} ({remote.osf_id}) "
                             f"from {remote.url} (Content-Range {response.headers.get('Content-Range')!r})")
        with open(part, mode) as handle:
            if on_bytes:
                on_bytes(remote.path, have, remote.size)
            for chunk in response.iter_content(CHUNK_BYTES):
                handle.write(chunk)
                have += len(chunk)
                if on_bytes:
                    on_bytes(remote.path, min(have, remote.size), remote.size)
                if have > remote.size:
                    break


def _keep(remote: RemoteFile, part: Path, dest: Path, failure: Exception | None) -> bool:
    """Give ``part`` its final name if it is complete and matches; otherwise say why not."""
    have = _size(part)
    where = f"{remote.path} ({remote.osf_id})"
    if have < remote.size:
        if isinstance(failure, OsfUnreachable) and have == 0:
            raise failure
        raise InputError(f"download of {where} stopped at {have} of {remote.size} bytes after {TRIES} requests "
                         f"({type(failure).__name__ if failure else 'short answers'}); rerun to resume from {part}")
    if have > remote.size:
        part.unlink()
        raise InputError(f"{where}: the server sent {have} bytes, more than the {remote.size} OSF publishes; "
                         "the download was removed")
    digest = sha256_of(part)
    if digest != remote.sha256:
        part.unlink()
        raise InputError(f"{where}: sha256 {digest} differs from the {remote.sha256} OSF publishes; "
                         "the download was removed")
    os.replace(part, dest)
    return True
