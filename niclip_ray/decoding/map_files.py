"""Turn the maps a user names (files, directories, NeuroVault collections) into a manifest.

One manifest item per 3-D map: ``{"map_id", "source_path", "volume"}``. A 4-D file with
several volumes gives one item per volume, ``map_id`` ``<name>:<k>`` and ``volume`` k
(-1 for a 3-D file). A map's name is its file name without ``.nii[.gz]`` whether the file
or its directory was named, unless another map of the same call has that name too: then
both keep their path (``dir/sub/a``). A NeuroVault map is ``collection_<c>/image_<i>``,
and its item carries :data:`~niclip_ray.decoding.schema.COLLECTION_COLUMNS`. An image
already in memory (:func:`image_items`) has ``image`` instead of a file, and no
``source_path``. Problems with a single file (unreadable, not NIfTI, a broken or looping
symbolic link, recorded as ``input_error``) do not stop the manifest: the item is kept
and fails alone when decoded, with an error row naming it. A NeuroVault metadata
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

from niclip_ray.decoding.schema import COLLECTION_COLUMNS
from niclip_ray.errors import InputError
from niclip_ray.neurovault.collections import find_collection, is_collection_dir, read_collection

_NIFTI = re.compile(r"\.nii(\.gz)?$")
#: Largest map read into memory: its voxels as stored plus their float32 copy, in bytes.
MAX_MAP_BYTES = 2 * 1024**3
#: A map whose field of view covers a smaller fraction of the brain mask gets a warning.
MIN_MASK_OVERLAP = 0.95
#: NeuroVault metadata fields that give a map's ``contrast``, the first one present.
CONTRAST_FIELDS = ("contrast_definition", "contrast_definition_cogatlas")


def _stem(path: Path) -> str:
    return _NIFTI.sub("", path.name) if _NIFTI.search(path.name) else path.stem


def _n_volumes(img) -> int:
    """Volumes of a 4-D image (header only) given as a file or in memory; 0 for a 3-D or unreadable one."""
    try:
        shape = img.shape if isinstance(img, nib.spatialimages.SpatialImage) else nib.load(str(img)).shape
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


def image_items(img: nib.spatialimages.SpatialImage, map_id: str) -> list[dict]:
    """Manifest items of an image in memory: one, or one per volume of a 4-D image (``<map_id>:<k>``)."""
    n = _n_volumes(img)
    if n:
        return [{"map_id": f"{map_id}:{k}", "source_path": None, "volume": k, "image": img} for k in range(n)]
    return [{"map_id": map_id, "source_path": None, "volume": -1, "image": img}]


def source_items(
    sources: Iterable[str | os.PathLike],
    collections: Iterable[int | str] = (),
    neurovault_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> list[list[dict]]:
    """The manifest items of each source, then of each collection, in the order given.

    Parameters are those of :func:`collect_maps`; a map's name depends on the other maps of
    the call (module docstring), so sources named together are listed together.

    Returns
    -------
    list of list of dict
        One list per source, then one per collection; a directory's maps sorted by path.

    Raises
    ------
    InputError
        When a directory holds no NIfTI file, or a collection cannot be found.
    """
    groups: list[list[tuple[Path, str, dict]]] = []  # per source: (file, name if its stem is shared, extra)
    for source in sources:
        path = Path(source)
        if is_collection_dir(path):
            groups.append(_collection_files(path))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if _NIFTI.search(p.name) and (p.is_file() or p.is_symlink()))
            if not found:
                raise InputError(f"directory {path} holds no .nii or .nii.gz file")
            groups.append([(f, f"{path.name}/{_NIFTI.sub('', f.relative_to(path).as_posix())}", {}) for f in found])
        else:
            groups.append([(path, _NIFTI.sub("", str(path)), {})])
    for collection_id in collections:
        groups.append(_collection_files(find_collection(collection_id, neurovault_dir, download)))
    stems = [_stem(f) for group in groups for f, _, extra in group if "collection_id" not in extra]
    out = []
    for group in groups:
        items = []
        for f, full_name, extra in group:
            if "collection_id" in extra:
                map_id = full_name
            else:
                map_id = _stem(f) if stems.count(_stem(f)) == 1 else full_name
            broken = _broken_link(f)
            if broken:
                items.append({"map_id": map_id, "source_path": str(f), "volume": -1, "input_error": broken, **extra})
            else:
                items += _items(map_id, f, extra)
        out.append(items)
    return out


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
    items = [item for group in source_items(sources, collections, neurovault_dir, download) for item in group]
    if not items:
        raise InputError("no maps given: name NIfTI files, directories or NeuroVault collections")
    check_unique(items)
    return sorted(items, key=lambda i: i["map_id"])


def check_unique(items: list[dict]) -> None:
    """Raise :class:`InputError` naming the map ids that several items share (the same map given twice)."""
    ids = [i["map_id"] for i in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"these maps were given twice: {dupes[:5]}")


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
        A manifest item of :func:`collect_maps` or :func:`image_items`.
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
        img = item["image"] if "image" in item else nib.load(item["source_path"])
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


def _collection_files(directory: Path) -> list[tuple[Path, str, dict]]:
    """``(file, map id, fields)`` of each map of a NeuroVault collection (fields: ``COLLECTION_COLUMNS``)."""
    out = []
    for image in read_collection(directory):
        contrast = next((image.metadata[k] for k in CONTRAST_FIELDS if k in image.metadata), None)
        fields = (image.collection_id, image.image_id, image.metadata.get("name"), contrast)
        extra = {column: None if value is None else str(value) for column, value in zip(COLLECTION_COLUMNS, fields)}
        if image.warning:
            extra["input_warning"] = image.warning
        out.append((image.path, image.map_id, extra))
    return out


def load_item(item: dict) -> nib.spatialimages.SpatialImage | str:
    """The image of a manifest item: its file or image, or the chosen volume of a 4-D one.

    Raises
    ------
    InputError
        When the file cannot be read (naming the map).
    """
    volume = int(item.get("volume", -1))
    if volume < 0:
        return item["image"] if "image" in item else item["source_path"]
    try:
        img = item["image"] if "image" in item else nib.load(item["source_path"])
        data = np.asarray(img.dataobj[..., volume], dtype=np.float32)
    except Exception as exc:  # nibabel raises many types on corrupt data
        raise InputError(f"map {item['map_id']}: cannot read volume {volume} ({type(exc).__name__}: {exc})") from exc
    return nib.Nifti1Image(data, img.affine)
