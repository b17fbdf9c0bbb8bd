"""Ray token authentication.

Ray 2.60 turns token auth on for every new local cluster (``~/.ray/auth_token``), and a
client that talks to such a cluster without the token fails with ``AuthenticationError``.
We look the token up once, in Ray's own order, and hand it to whatever connects. Ray
writes a token it generates with the default umask (readable by every local user), so
before an embedded Ray starts we write it ourselves, readable by the owner only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def token_path() -> Path:
    """Where Ray reads the token file: ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()


def find_token() -> str | None:
    """Return the Ray auth token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = token_path()
    if path.is_file():
        token = path.read_text().strip()
        return token or None
    return None


def auth_env() -> dict[str, str]:
    """Environment variables that let a client (or a submitted job) authenticate.

    Empty when auth is explicitly disabled or no token is known.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {"RAY_AUTH_MODE": "disabled"}
    token = find_token()
    if token is None:
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


def apply_client_auth() -> None:
    """Export the auth variables into this process before connecting to a cluster."""
    for key, value in auth_env().items():
        os.environ.setdefault(key, value)


def ensure_private_token() -> Path | None:
    """Before a new embedded Ray starts, make its token file readable by this user only.

    Creates the token (256 random bits, as Ray does) with mode 0600 when there is none, and
    takes group and other permissions off an existing one this user owns. Nothing is done
    when auth is disabled or the token comes from ``RAY_AUTH_TOKEN``.

    Returns
    -------
    Path or None
        The token file, or None when none is used.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(0o600)
        return path
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return path
