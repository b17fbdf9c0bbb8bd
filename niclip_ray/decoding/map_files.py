"""Turn the maps a user names (files, directories, NeuroVault collections) into a manifest.

One manifest item per 3-D map: ``{"map_id", "source_path", "volume"}``. A 4-D file with
several volumes gives one item per volume, ``map_id`` ``<name>:<k>`` and ``volume`` k
(-1 for a 3-D file). Problems with a single file (unreadable, not NIfTI) do not stop the
manifest: the item is kept and fails alone when decoded, with an error row naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.errors import InputError
from niclip_ray.neurovault.collections import find_collection, is_collection_dir, read_collection

_NIFTI = re.compile(r"\.nii(\.gz)?$")


def _stem(path: Path) -> str:
    return _NIFTI.sub("", path.name) if _NIFTI.search(path.name) else path.stem


def _n_volumes(path: Path) -> int:
    """Volumes in a 4-D file (header only); 0 for a 3-D or unreadable file."""
    try:
        shape = nib.load(str(path)).shape
    except Exception:  # unreadable here; the decode step reports it per map
        return 0
    return int(shape[3]) if len(shape) == 4 and shape[3] > 1 else 0


def _items(map_id: str, path: Path, extra: dict | None = None) -> list[dict]:
    extra = extra or {}
    path = path.absolute()
    n = _n_volumes(path) if path.is_file() else 0
    if n:
        return [{"map_id": f"{map_id}:{k}", "source_path": str(path), "volume": k, **extra} for k in range(n)]
    return [{"map_id": map_id, "source_path": str(path), "volume": -1, **extra}]


def collect_maps(
    sources: Iterable[str | os.PathLike],
    collections: Iterable[int | str] = (),
    neurovault_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> list[dict]:
    """Build the decode manifest.

    Parameters
    ----------
    sources : paths
        NIfTI files, directories searched recursively for ``*.nii[.gz]``, or NeuroVault
        ``collection_<id>/`` directories (map ids ``collection_<c>/image_<i>``).
    collections : ids
        NeuroVault collection ids, found under ``neurovault_dir`` (or fetched with ``download``).

    Returns
    -------
    list of dict
        Sorted by ``map_id``; ids are unique.

    Raises
    ------
    InputError
        When nothing is given, a directory holds no NIfTI file, or ids collide.
    """
    items: list[dict] = []
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            if is_collection_dir(path):
                items += _collection_items(path)
                continue
            found = sorted(p for p in path.rglob("*") if p.is_file() and _NIFTI.search(p.name))
            if not found:
                raise InputError(f"directory {path} holds no .nii or .nii.gz file")
            for f in found:
                items += _items(f"{path.name}/{_NIFTI.sub('', f.relative_to(path).as_posix())}", f)
        else:
            files.append(path)
    stems = [_stem(f) for f in files]
    for f, stem in zip(files, stems):
        map_id = stem if stems.count(stem) == 1 else _NIFTI.sub("", str(f))
        items += _items(map_id, f)
    for collection_id in collections:
        items += _collection_items(find_collection(collection_id, neurovault_dir, download))
    if not items:
        raise InputError("no maps given: name NIfTI files, directories or NeuroVault collections")
    ids = [i["map_id"] for i in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"these maps were given twice: {dupes[:5]}")
    return sorted(items, key=lambda i: i["map_id"])


def _collection_items(directory: Path) -> list[dict]:
    out = []
    for image in read_collection(directory):
        extra = {"collection_id": image.collection_id, "image_id": image.image_id,
                 "name": str(image.metadata.get("name", ""))}
        out += _items(image.map_id, image.path, extra)
    return out


def load_item(item: dict) -> nib.Nifti1Image | str:
    """The image of a manifest item: its file, or the chosen volume of a 4-D file.

    Raises
    ------
    InputError
        When the file cannot be read (naming the map).
    """
    volume = int(item.get("volume", -1))
    if volume < 0:
        return item["source_path"]
    try:
        img = nib.load(item["source_path"])
        data = np.asarray(img.dataobj[..., volume], dtype=np.float32)
    except Exception as exc:  # nibabel raises many types on corrupt data
        raise InputError(f"map {item['map_id']}: cannot read volume {volume} ({type(exc).__name__}: {exc})") from exc
    return nib.Nifti1Image(data, img.affine)
