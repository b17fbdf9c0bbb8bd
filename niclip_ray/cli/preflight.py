"""Checks a command runs before torch, nilearn or Ray are imported: named files, bundle, atlas.

Each reads only the file system and a bundle's ``config.json``, so a typo fails in well
under two seconds and before any output directory is made. The full checks (weights,
vocabulary, the atlas's files) still run later; these catch what a user most often gets
wrong, early.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from niclip_ray.atlas.cache import default_data_dirs, find_difumo
from niclip_ray.errors import InputError, ParameterError

#: Files every bundle directory holds (:mod:`niclip_ray.model.bundle`).
BUNDLE_FILES = ("config.json", "manifest.json")


def existing_paths(paths: Iterable[str | os.PathLike], what: str = "map") -> None:
    """Refuse named paths that do not exist, all of them in one line.

    Raises
    ------
    InputError
        ``no such file or directory: map a.nii.gz, map b.nii.gz``.
    """
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise InputError("no such file or directory: " + ", ".join(f"{what} {p}" for p in missing))


def bundle_config(path: str | os.PathLike) -> dict:
    """A bundle directory's ``config.json``, after checking the directory looks like a bundle.

    Raises
    ------
    InputError
        No such directory, a file, a directory without the bundle's files, or a
        ``config.json`` that is not a JSON object.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"model bundle {root} does not exist or is not a directory")
    missing = [name for name in BUNDLE_FILES if not (root / name).is_file()]
    if missing:
        raise InputError(f"model bundle {root} lacks {', '.join(missing)}: is it a bundle directory "
                         "(from `train`, `model import-reference` or `model fetch-reference`)?")
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"model bundle {root}: config.json is unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise InputError(f"model bundle {root}: config.json is not a JSON object")
    return config


def standin_allowed(config: dict, bundle: str | os.PathLike, standin: bool) -> None:
    """Refuse a bundle trained on the offline stand-in atlas unless ``--standin`` allows it."""
    needs = str(config.get("atlas_id") or "")
    if "standin" in needs and not standin:
        raise InputError(f"bundle {bundle} was trained on {needs}, an offline stand-in for DiFuMo: its predictions "
                         "do not describe the maps; pass --standin to decode with it anyway")


def atlas_available(config: dict, atlas_dir: str | os.PathLike | None, allow_mismatch: bool) -> None:
    """Refuse a missing ``--atlas-dir``, or one without the real DiFuMo a bundle trained on it needs.

    A bundle trained on a stand-in (built on demand) or with no recorded atlas passes; the
    atlas's files are checked when it loads.

    Raises
    ------
    ParameterError
        Naming ``atlas_dir`` (the CLI shows ``--atlas-dir``).
    """
    dirs = [Path(atlas_dir).expanduser()] if atlas_dir is not None else default_data_dirs()
    if atlas_dir is not None and not dirs[0].is_dir():
        raise ParameterError("atlas_dir", f"{atlas_dir} does not exist")
    needs = str(config.get("atlas_id") or "")
    if not needs or "standin" in needs or allow_mismatch:
        return
    dim = config.get("atlas_dim") or config.get("image_dim")
    found = [c for c in find_difumo(dirs) if not c.standin and (dim is None or c.dim == int(dim))]
    if not any(c.atlas_id == needs for c in found):
        where = ", ".join(str(d) for d in dirs)
        raise ParameterError("atlas_dir", f"holds no {needs} atlas, which the bundle was trained on (searched "
                             f"{where}); fetch it with `niclip-ray atlas fetch --dim {dim or 512}` and point "
                             "--atlas-dir at it")
