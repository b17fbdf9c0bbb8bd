"""Where niclip-ray keeps what it downloads: ``NICLIP_HOME``, by default ``~/.cache/niclip-ray``.

``<home>/models/niclip-reference`` is the bundle ``niclip-ray model fetch-reference``
writes and ``niclip-ray decode`` uses when no ``--model`` is given. This module imports
neither torch, nilearn nor Ray, so that ``decode`` finds its default before they load.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "NICLIP_HOME"
#: Name of the paper's bundle under ``<home>/models``.
REFERENCE_BUNDLE = "niclip-reference"


def niclip_home() -> Path:
    """``NICLIP_HOME``, else ``~/.cache/niclip-ray``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "niclip-ray").expanduser()


def default_bundle_dir() -> Path:
    """The paper's bundle: ``<home>/models/niclip-reference``."""
    return niclip_home() / "models" / REFERENCE_BUNDLE


def find_default_bundle() -> Path | None:
    """:func:`default_bundle_dir` when it exists (loading it checks that it is a bundle), else None."""
    path = default_bundle_dir()
    return path if path.is_dir() else None
