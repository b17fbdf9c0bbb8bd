"""Snapshot the live Cognitive Atlas API into the reference's file layout (online only).

``fetch_snapshot(cache_dir)`` writes ``task_snapshot-MM-DD-YY.json`` and
``concept_extended_snapshot-MM-DD-YY.json`` from the ``v-alpha`` task and concept lists,
and, with ``relations=True``, ``full_task_concepts.csv`` from one ``task?id=`` call per task
(the concepts each task measures). A snapshot already in ``cache_dir`` is reused, so the
API is called once; :func:`niclip_ray.ontology.load_ontology` then reads the directory.
Nothing here runs in tests against the network: the HTTP getter is injectable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_csv, write_json
from niclip_ray.errors import InputError
from niclip_ray.ontology.reference import CONCEPT_GLOB, FULL_RELATIONS, TASK_GLOB

API = "https://www.cognitiveatlas.org/api/v-alpha"
ONLINE = "online"
GetJson = Callable[[str], object]


def http_get_json(url: str, timeout: float = 30.0) -> object:
    """GET ``url`` and decode its JSON body (standard library only)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def _get(get_json: GetJson, url: str) -> object:
    try:
        return get_json(url)
    except Exception as exc:  # urllib raises URLError, HTTPError, TimeoutError, JSON errors ...
        raise InputError(f"the Cognitive Atlas API is unreachable ({url}): {type(exc).__name__}: {exc}") from exc


def _task_concepts(detail: object) -> list[str]:
    """Concept ids a task measures, from a ``task?id=`` response."""
    if isinstance(detail, list):
        detail = detail[0] if detail else {}
    concepts = detail.get("concepts", []) if isinstance(detail, dict) else []
    out = []
    for entry in concepts or []:
        if isinstance(entry, dict):
            relation = str(entry.get("relationship", "measuredBy"))
            concept = entry.get("concept_id") or entry.get("id")
            if concept and relation in ("measuredBy", "measures"):
                out.append(str(concept))
    return out


def fetch_snapshot(
    cache_dir: str | Path,
    *,
    relations: bool = False,
    get_json: GetJson | None = None,
    threads: int = 8,
) -> Path:
    """Download (or reuse) a Cognitive Atlas snapshot in the reference's layout.

    Parameters
    ----------
    cache_dir : path
        Directory for the snapshot files.
    relations : bool
        Also fetch every task's ``measuredBy`` concepts (one call per task) into
        ``full_task_concepts.csv``, for the full ontology.
    get_json : callable, optional
        ``url -> parsed JSON`` (default: :func:`http_get_json`).
    threads : int
        Parallel calls for the per-task relations.

    Returns
    -------
    Path
        ``cache_dir``, ready for ``load_ontology(cache_dir, reduced=...)`` (the reduced set
        also needs the reference's ``reduced_tasks.csv`` there).

    Raises
    ------
    InputError
        When the API cannot be reached or answers something other than lists of terms.
    """
    get_json = get_json or http_get_json
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%m-%d-%y")
    if not (any(cache_dir.glob(TASK_GLOB)) and any(cache_dir.glob(CONCEPT_GLOB))):
        tasks = _get(get_json, f"{API}/task")
        concepts = _get(get_json, f"{API}/concept")
        for name, data in (("task", tasks), ("concept", concepts)):
            if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
                raise InputError(f"the Cognitive Atlas API returned no {name} list")
        write_json(cache_dir / f"task_snapshot-{stamp}.json", tasks)
        write_json(cache_dir / f"concept_extended_snapshot-{stamp}.json", concepts)
    if relations and not (cache_dir / FULL_RELATIONS).is_file():
        task_file = sorted(cache_dir.glob(TASK_GLOB))[-1]
        task_ids = [str(t["id"]) for t in json.loads(task_file.read_text()) if t.get("id")]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            details = list(pool.map(lambda tid: _get(get_json, f"{API}/task?id={tid}"), task_ids))
        rows = [(c, t) for t, detail in zip(task_ids, details) for c in _task_concepts(detail)]
        frame = pd.DataFrame(rows, columns=["id", "measuredBy"])  # concept measuredBy task, as the reference
        write_csv(cache_dir / FULL_RELATIONS, frame)
    return cache_dir

