"""NeuroVault collections in nilearn's on-disk layout.

``nilearn.datasets.fetch_neurovault*`` store a collection as::

    <data_dir>/neurovault/collection_<id>/
        collection_metadata.json
        image_<image_id>.nii.gz
        image_<image_id>_metadata.json

:func:`read_collection` lists its maps with their metadata; :func:`find_collection`
locates a collection by id and, only when asked to, fetches it through nilearn (which
fails *silently* offline, returning an empty result: we turn that into an error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from niclip_ray.errors import InputError

_COLLECTION = re.compile(r"^collection_(\w+)$")
_IMAGE = re.compile(r"^image_(\d+)\.nii(\.gz)?$")
#: Metadata fields copied into decoding manifests when present.
METADATA_FIELDS = ("name", "map_type", "cognitive_paradigm_cogatlas", "contrast_definition",
                   "contrast_definition_cogatlas", "task")


@dataclass(frozen=True)
class NeuroVaultImage:
    """One map of a collection.

    Attributes
    ----------
    collection_id, image_id : str
    path : Path
        The NIfTI file.
    metadata : dict
        Selected fields of ``image_<id>_metadata.json`` (empty if it is missing or unreadable).
    warning : str
        Why the metadata file could not be read, naming it ("" when it was read or is missing).
    """

    collection_id: str
    image_id: str
    path: Path
    metadata: dict = field(default_factory=dict)
    warning: str = ""

    @property
    def map_id(self) -> str:
        """``collection_<c>/image_<i>``: unique across collections."""
        return f"collection_{self.collection_id}/image_{self.image_id}"


def is_collection_dir(path: str | Path) -> bool:
    """True for a ``collection_<id>`` directory holding ``image_<id>.nii[.gz]`` files."""
    path = Path(path)
    return bool(_COLLECTION.match(path.name)) and path.is_dir() and any(
        _IMAGE.match(p.name) for p in path.iterdir()
    )


def _metadata(path: Path) -> tuple[dict, str]:
    """Selected fields of a metadata file, and why it could not be read ("" when it was, or is missing).

    Any unreadable file (not UTF-8, not JSON, nested too deeply to parse, not an object)
    gives empty metadata and a warning naming it: the map itself can still be decoded.
    """
    if not path.is_file():
        return {}, ""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8 or bad JSON
        return {}, f"cannot read its NeuroVault metadata {path} ({type(exc).__name__}: {exc}); decoded without it"
    if not isinstance(data, dict):
        return {}, f"its NeuroVault metadata {path} is not a JSON object; decoded without it"
    return {k: data[k] for k in METADATA_FIELDS if data.get(k) not in (None, "")}, ""


def read_collection(directory: str | Path) -> list[NeuroVaultImage]:
    """The maps of one collection directory, sorted by image id.

    Raises
    ------
    InputError
        When ``directory`` is not a collection or holds no image.
    """
    directory = Path(directory)
    match = _COLLECTION.match(directory.name)
    if not match or not directory.is_dir():
        raise InputError(f"{directory} is not a NeuroVault collection directory (collection_<id>/)")
    images = []
    for path in directory.iterdir():
        image = _IMAGE.match(path.name)
        if image:
            meta, warning = _metadata(directory / f"image_{image.group(1)}_metadata.json")
            images.append(NeuroVaultImage(match.group(1), image.group(1), path, meta, warning))
    if not images:
        raise InputError(f"NeuroVault collection {directory} holds no image_<id>.nii.gz files")
    return sorted(images, key=lambda im: int(im.image_id))


def find_collection(collection_id: int | str, neurovault_dir: str | Path | None = None, download: bool = False) -> Path:
    """Locate ``collection_<id>`` on disk, fetching it through nilearn when ``download``.

    Parameters
    ----------
    collection_id : int or str
    neurovault_dir : path, optional
        nilearn data directory (or its ``neurovault/`` subdirectory). Default: nilearn's.
    download : bool
        Fetch from neurovault.org when the collection is not on disk.

    Raises
    ------
    InputError
        When the collection is not on disk and cannot (or may not) be fetched, or the
        fetch returned nothing.
    """
    from nilearn.datasets import get_data_dirs

    roots = [Path(neurovault_dir)] if neurovault_dir is not None else [Path(d) for d in get_data_dirs()]
    candidates = [r / f"collection_{collection_id}" for r in roots] + [
        r / "neurovault" / f"collection_{collection_id}" for r in roots
    ]
    for candidate in candidates:
        if is_collection_dir(candidate):
            return candidate
    if not download:
        raise InputError(
            f"NeuroVault collection {collection_id} is not in {', '.join(str(r) for r in roots)}; "
            "pass --neurovault-dir, or --download to fetch it"
        )
    from nilearn.datasets import fetch_neurovault_ids

    data_dir = roots[0].parent if roots[0].name == "neurovault" else roots[0]
    try:
        bunch = fetch_neurovault_ids(collection_ids=[int(collection_id)], data_dir=str(data_dir), verbose=0)
    except Exception as exc:  # network failures come in many types
        raise InputError(f"could not fetch NeuroVault collection {collection_id}: {exc}") from exc
    if not bunch.get("images"):
        raise InputError(
            f"fetching NeuroVault collection {collection_id} returned no image (offline, unknown or empty collection)"
        )
    return Path(bunch["images"][0]).parent
