"""Ray token authentication.

Ray 2.60 turns token auth on for every new local cluster (``~/.ray/auth_token``), and a
client that talks to such a cluster without the token fails with ``AuthenticationError``.
We look the token up once, in Ray's own order, and hand it to whatever connects.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


def find_token() -> str | None:
    """Return the Ray auth token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", DEFAULT_TOKEN_PATH)).expanduser()
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
