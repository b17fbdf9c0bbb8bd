"""Turn the maps a user names (files, directories, NeuroVault collections) into a manifest.

One manifest item per 3-D map: ``{"map_id", "source_path", "volume"}``. A 4-D file with
several volumes gives one item per volume, ``map_id`` ``<name>:<k>`` and ``volume`` k
(-1 for a 3-D file). Problems with a single file (unreadable, not NIfTI, a broken or
looping symbolic link, recorded as ``input_error``) do not stop the manifest: the item is
kept and fails alone when decoded, with an error row naming it. A NeuroVault metadata
file that cannot be read is recorded as ``input_warning``: the map is decoded, and its
rows carry the warning.

Before a map's data is read, :func:`check_map` checks its header: the size its voxels
would take in memory (at most :data:`MAX_MAP_BYTES`), whether it has a spatial transform
(sform or qform), and how much of the brain mask its field of view covers (at least
:data:`MIN_MASK_OVERLAP`). The last two give a warning, or an error when strict.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.errors import InputError
from niclip_ray.neurovault.collections import find_collection, is_collection_dir, read_collection

_NIFTI = re.compile(r"\.nii(\.gz)?$")
#: Largest map read into memory: its voxels as stored plus their float32 copy, in bytes.
MAX_MAP_BYTES = 2 * 1024**3
#: A map whose field of view covers a smaller fraction of the brain mask gets a warning.
MIN_MASK_OVERLAP = 0.95


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
            found = sorted(p for p in path.rglob("*") if _NIFTI.search(p.name) and (p.is_file() or p.is_symlink()))
            if not found:
                raise InputError(f"directory {path} holds no .nii or .nii.gz file")
            for f in found:
                map_id = f"{path.name}/{_NIFTI.sub('', f.relative_to(path).as_posix())}"
                broken = _broken_link(f)
                if broken:
                    items.append({"map_id": map_id, "source_path": str(f), "volume": -1, "input_error": broken})
                else:
                    items += _items(map_id, f)
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


def _broken_link(path: Path) -> str:
    """Why a path is a symbolic link that leads to no file ("" when it is not one)."""
    if path.is_file() or not path.is_symlink():
        return ""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop ({path} -> {os.readlink(path)})"
        return f"broken symbolic link ({path} -> {os.readlink(path)}: {exc.strerror})"
    return f"symbolic link to something that is not a file ({path} -> {os.readlink(path)})"


def file_stamp(path: str | os.PathLike) -> dict | None:
    """Size, modification time (ns) and sha256 of a file: what a resumed decode compares (None if unreadable)."""
    try:
        stat = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def mask_overlap(shape: tuple[int, ...], affine: np.ndarray, grid) -> float:
    """Fraction of the brain-mask voxels of ``grid`` inside a voxel grid's field of view."""
    world = grid.cache.get("mask_mm")
    if world is None:
        ijk = np.vstack(np.unravel_index(np.flatnonzero(grid.flat_to_masked >= 0), grid.shape)).astype(np.float64)
        world = grid.cache["mask_mm"] = grid.affine[:3, :3] @ ijk + grid.affine[:3, 3:4]
    to_voxels = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    voxels = to_voxels[:3, :3] @ world + to_voxels[:3, 3:4]
    size = np.asarray(shape[:3], dtype=np.float64)[:, None]
    inside = ((voxels >= -0.5) & (voxels <= size - 0.5)).all(axis=0)
    return float(inside.mean()) if inside.size else 0.0


def oversize(shape: tuple[int, ...], dtype: np.dtype, limit: int) -> str:
    """Why a header's voxels would not fit ``limit`` bytes in memory ("" when they do).

    A map takes its voxels as stored plus their float32 copy: ``n_voxels * (itemsize + 4)``.
    """
    n_voxels = 1
    for size in shape:
        n_voxels *= int(size)
    needed = n_voxels * (np.dtype(dtype).itemsize + 4)
    if needed <= limit:
        return ""
    return (f"its header claims {'x'.join(map(str, shape))} voxels of {dtype}, {_in_units(needed, '.1f')} in "
            f"memory, over the {_in_units(limit, 'g')} limit per map; nothing was read")


def _in_units(n_bytes: int, spec: str) -> str:
    """Bytes in GiB from 1 GiB on, in MiB below."""
    return f"{n_bytes / 1024**3:{spec}} GiB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:{spec}} MiB"


def check_map(item: dict, grid, strict: bool = False) -> str:
    """Check a manifest item's header before its data is read; return its warning ("" if none).

    Parameters
    ----------
    item : dict
        A manifest item of :func:`collect_maps`.
    grid : MaskGrid
        The brain-mask grid the map is projected on.
    strict : bool
        Raise instead of warning about a missing transform or a partial overlap.

    Raises
    ------
    InputError
        The item's ``input_error`` (a broken link), a header claiming more than
        :data:`MAX_MAP_BYTES`, or, when ``strict``, what would be its warning. A header
        nibabel cannot read passes: :func:`niclip_ray.atlas.maps.load_map` names the problem.
    """
    label = f"map {item['map_id']}"
    if item.get("input_error"):
        raise InputError(f"{label}: {item['input_error']}")
    try:
        img = nib.load(item["source_path"])
        shape = tuple(int(s) for s in img.shape)
    except Exception:  # unreadable here; loading the map reports it
        return ""
    if len(shape) < 3:  # loading the map reports it
        return ""
    volumes = shape[:3] if int(item.get("volume", -1)) >= 0 else shape
    problem = oversize(volumes, img.get_data_dtype(), MAX_MAP_BYTES)
    if problem:
        raise InputError(f"{label}: {problem}")
    warnings = []
    header = img.header
    if "sform_code" in header and int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.append("no sform or qform in its header: placed by nibabel's fallback affine (voxel sizes only)")
    try:
        overlap = mask_overlap(shape, img.affine, grid)
    except np.linalg.LinAlgError:
        overlap = 0.0
    if overlap < MIN_MASK_OVERLAP:
        warnings.append(f"its field of view covers {overlap:.1%} of the brain mask; is it in MNI space?")
    if warnings and strict:
        raise InputError(f"{label}: {'; '.join(warnings)} (refused under --strict)")
    return "; ".join(warnings)


def _collection_items(directory: Path) -> list[dict]:
    out = []
    for image in read_collection(directory):
        extra = {"collection_id": image.collection_id, "image_id": image.image_id,
                 "name": str(image.metadata.get("name", ""))}
        if image.warning:
            extra["input_warning"] = image.warning
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
