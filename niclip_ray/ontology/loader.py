"""One entry point for every ontology source: the shipped subset, a native dir, reference or export files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from niclip_ray.errors import InputError
from niclip_ray.ontology.api import ONLINE, fetch_snapshot
from niclip_ray.ontology.core import Ontology, is_native, read_native
from niclip_ray.ontology.export import is_export_dir, read_export_dir
from niclip_ray.ontology.reference import is_reference_dir, read_reference_dir

BUILTIN = "builtin"


def builtin_dir() -> Path:
    """Directory of the offline ontology subset shipped in the package."""
    return Path(str(resources.files("niclip_ray") / "data" / "ontology"))


def default_cache_dir() -> Path:
    """Where the live Cognitive Atlas snapshot is cached: ``$NICLIP_COGAT_CACHE`` or ``~/.cache/niclip-ray/cognitive_atlas``."""
    return Path(os.environ.get("NICLIP_COGAT_CACHE", Path.home() / ".cache" / "niclip-ray" / "cognitive_atlas"))


def load_ontology(source: str | Path = BUILTIN, reduced: bool = True, cache_dir: str | Path | None = None) -> Ontology:
    """Load a Cognitive Atlas ontology.

    Parameters
    ----------
    source : ``"builtin"`` or path
        ``"builtin"``: the offline subset shipped with niclip-ray (common fMRI tasks, their
        concepts and the 10 domains; definitions written for this project). A directory
        in the native layout (e.g. a bundle's ``ontology/``), or the reference's
        ``cognitive_atlas`` directory (``task_snapshot-*.json``,
        ``concept_extended_snapshot-*.json``, ``reduced_tasks.csv``, ...), or the Cognitive
        Atlas JSON export (``TaskCollection.json``, ``ConceptCollection.json``, ...; see
        :mod:`niclip_ray.ontology.export`). ``"online"``: the
        live Cognitive Atlas API, snapshotted once into ``cache_dir`` (the reduced set also
        needs the reference's ``reduced_tasks.csv`` copied there).
    reduced : bool
        For reference and export directories: the reduced task set (default) or the full
        one (``reduced=False``). Native directories are read as they are.
    cache_dir : path, optional
        Snapshot cache for ``"online"`` (default: :func:`default_cache_dir`).

    Returns
    -------
    Ontology
        ``.tasks`` in vocabulary order, ``.concepts``, ``.domains`` and the hierarchy
        matrices ``.task_concept_matrix`` / ``.concept_domain_matrix``.

    Raises
    ------
    InputError
        When ``source`` is neither of the above.
    """
    if str(source) == ONLINE:
        source = fetch_snapshot(cache_dir or default_cache_dir(), relations=not reduced)
    directory = builtin_dir() if str(source) == BUILTIN else Path(source)
    if not directory.is_dir():
        raise InputError(f"ontology source {source} is not 'builtin', 'online' or a directory")
    if is_native(directory):
        return read_native(directory)
    if is_reference_dir(directory):
        return read_reference_dir(directory, reduced=reduced)
    if is_export_dir(directory):
        return read_export_dir(directory, reduced=reduced)
    raise InputError(
        f"{directory} holds no ontology: expected meta.json + tasks.csv (niclip layout) or "
        "task_snapshot-*.json + concept_extended_snapshot-*.json (reference layout) or "
        "TaskCollection.json + ConceptCollection.json (Cognitive Atlas JSON export)"
    )
