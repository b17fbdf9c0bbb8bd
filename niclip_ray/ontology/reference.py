"""Readers for the reference's Cognitive Atlas files (``data/cognitive_atlas/``).

* ``task_snapshot-*.json``: list of API ``v-alpha`` task dicts (``id``, ``name``,
  ``definition_text``).
* ``concept_extended_snapshot-*.json``: concept dicts with ``id``, ``name``,
  ``definition_text`` and ``id_concept_class`` (``ctp_C1`` .. ``ctp_C10``).
* ``reduced_tasks.csv``: a ``task`` column and any number of concept-name columns.
* ``concept_to_process.json``: ``{concept_name: "ctp_Cx"}`` domain overrides.
* ``full_task_concepts.csv``: ``id, measuredBy`` (concept id, task id), the full
  relations; or NiMARE's ``relationships.csv`` (``input, output, rel_type``).

:func:`read_reference_dir` assembles them into an :class:`~niclip_ray.ontology.core.Ontology`
the way the reference does (drop entries without a name or definition, keep snapshot
order, apply the overrides), but always applies the overrides, allows any number of
concepts per task, and fails with a clear message instead of a ``KeyError``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd

from niclip_ray.errors import InputError
from niclip_ray.ontology.core import DOMAINS, Ontology, default_domains

TASK_GLOB = "task_snapshot-*.json"
CONCEPT_GLOB = "concept_extended_snapshot-*.json"
REDUCED = "reduced_tasks.csv"
OVERRIDES = "concept_to_process.json"
FULL_RELATIONS = "full_task_concepts.csv"
RELATIONSHIPS = "relationships.csv"
_ID = re.compile(r"[A-Za-z]{3}_[A-Za-z0-9]+")
log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def _read_json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read Cognitive Atlas snapshot {path}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise InputError(f"{path} should hold a JSON list of objects (a Cognitive Atlas API dump)")
    return data


def _clean(entries: list[dict], path: Path, id_col: str) -> pd.DataFrame:
    rows = []
    for entry in entries:
        name = str(entry.get("name") or "").strip()
        definition = str(entry.get("definition_text") or "").strip()
        if not name or not definition:
            continue  # the reference drops entries with an empty name or definition
        if not entry.get("id"):
            raise InputError(f"{path}: entry {name!r} has no id")
        rows.append({id_col: str(entry["id"]), "name": name, "definition": definition,
                     "domain_id": str(entry.get("id_concept_class") or "").strip()})
    frame = pd.DataFrame(rows, columns=[id_col, "name", "definition", "domain_id"])
    return frame.drop_duplicates(subset=id_col).reset_index(drop=True)


def read_task_snapshot(path: str | Path) -> pd.DataFrame:
    """Tasks in snapshot order: ``task_id, name, definition`` (entries lacking either dropped)."""
    return _clean(_read_json_list(Path(path)), Path(path), "task_id").drop(columns="domain_id")


def read_concept_snapshot(path: str | Path) -> pd.DataFrame:
    """Concepts: ``concept_id, name, definition, domain_id`` (``id_concept_class``; may be empty)."""
    return _clean(_read_json_list(Path(path)), Path(path), "concept_id")


def read_reduced_tasks(path: str | Path) -> pd.DataFrame:
    """Long ``task, concept`` pairs (names) from ``reduced_tasks.csv``.

    The first column named ``task`` (or the first column) holds task names; every other
    column holds a concept name or is empty. A task without concepts keeps one row with
    an empty concept so that it stays in the reduced set.
    """
    try:
        wide = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if wide.empty:
        raise InputError(f"{path} lists no tasks")
    task_col = "task" if "task" in wide.columns else wide.columns[0]
    concept_cols = [c for c in wide.columns if c != task_col]
    pairs = []
    for row in wide.itertuples(index=False):
        record = row._asdict()
        task = str(record[task_col]).strip()
        if not task:
            continue
        concepts = [str(record[c]).strip() for c in concept_cols if str(record[c]).strip()]
        pairs.extend((task, c) for c in concepts or [""])
    return pd.DataFrame(pairs, columns=["task", "concept"])


def read_concept_overrides(path: str | Path) -> dict[str, str]:
    """``{concept_name: domain_id}`` from ``concept_to_process.json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read domain overrides {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} should map concept names to ctp_C1..ctp_C10")
    return {str(k): str(v) for k, v in data.items()}


def read_measured_by(path: str | Path) -> pd.DataFrame:
    """Raw ``measuredBy`` pairs from ``full_task_concepts.csv`` (``id, measuredBy``).

    In the reference, ``id`` is a concept and ``measuredBy`` the task that measures it (the
    renamed ``input, output`` of NiMARE's relationships); a cell may hold one id or several
    (a list literal, commas, semicolons). Which side is the task is decided later, against
    the snapshots (:func:`orient_pairs`).

    Returns
    -------
    DataFrame
        ``id, measuredBy``, one id on each side per row.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not {"id", "measuredBy"} <= set(frame.columns):
        raise InputError(f"{path} needs the columns id, measuredBy; has {list(frame.columns)}")
    pairs = [
        (a, b)
        for left, right in zip(frame["id"], frame["measuredBy"])
        for a in _ID.findall(left)
        for b in _ID.findall(right)
    ]
    return pd.DataFrame(pairs, columns=["id", "measuredBy"]).drop_duplicates().reset_index(drop=True)


def read_relationships(path: str | Path) -> pd.DataFrame:
    """``measuredBy`` rows of NiMARE's ``relationships.csv`` (``input, output, rel_type``) as ``id, measuredBy``."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not {"input", "output", "rel_type"} <= set(frame.columns):
        raise InputError(f"{path} needs the columns input, output, rel_type; has {list(frame.columns)}")
    rows = frame[frame["rel_type"] == "measuredBy"]
    return pd.DataFrame({"id": rows["input"].to_numpy(), "measuredBy": rows["output"].to_numpy()}).drop_duplicates()


def orient_pairs(pairs: pd.DataFrame, task_ids, concept_ids) -> pd.DataFrame:
    """Turn ``id, measuredBy`` pairs into ``task_id, concept_id`` links between known ids.

    Task and concept ids share prefixes (``trm_``), so the orientation is the one that
    matches more pairs to the snapshots; pairs naming unknown ids are dropped.
    """
    tasks, concepts = set(task_ids), set(concept_ids)
    forward = pairs["id"].isin(concepts) & pairs["measuredBy"].isin(tasks)  # concept measuredBy task
    backward = pairs["id"].isin(tasks) & pairs["measuredBy"].isin(concepts)
    if forward.sum() >= backward.sum():
        links = pd.DataFrame({"task_id": pairs.loc[forward, "measuredBy"], "concept_id": pairs.loc[forward, "id"]})
    else:
        links = pd.DataFrame({"task_id": pairs.loc[backward, "id"], "concept_id": pairs.loc[backward, "measuredBy"]})
    return links.drop_duplicates().reset_index(drop=True)


def _single(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if not found:
        raise InputError(f"{directory} has no {pattern} (a Cognitive Atlas snapshot in the reference format)")
    return found[-1]  # the newest dated snapshot sorts last within one date format


def is_reference_dir(directory: str | Path) -> bool:
    """True when ``directory`` holds reference-format snapshots."""
    directory = Path(directory)
    return any(directory.glob(TASK_GLOB)) and any(directory.glob(CONCEPT_GLOB))


def read_reference_dir(directory: str | Path, reduced: bool = True) -> Ontology:
    """Build an ontology from the reference's ``cognitive_atlas`` directory.

    Parameters
    ----------
    directory : path
    reduced : bool
        Keep only the tasks of ``reduced_tasks.csv`` (in snapshot order) and take their
        concepts from it; otherwise keep every task and read ``full_task_concepts.csv``.

    Raises
    ------
    InputError
        When a file is missing, or the reduced set names tasks/concepts absent from the
        snapshots (listed in the message).
    """
    directory = Path(directory)
    tasks = read_task_snapshot(_single(directory, TASK_GLOB))
    concepts = read_concept_snapshot(_single(directory, CONCEPT_GLOB))
    overrides_path = directory / OVERRIDES
    overrides = read_concept_overrides(overrides_path) if overrides_path.is_file() else {}
    by_name = {_key(k): v for k, v in overrides.items()}
    concepts["domain_id"] = [by_name.get(_key(n), d) for n, d in zip(concepts["name"], concepts["domain_id"])]
    unknown = sorted(set(concepts["domain_id"]) - set(DOMAINS) - {""})
    if unknown:
        log.warning("concept classes %s are not among the 10 domains; those concepts get no domain", unknown)
        concepts.loc[concepts["domain_id"].isin(unknown), "domain_id"] = ""
    if reduced:
        tasks, links = _reduced(directory / REDUCED, tasks, concepts)
    else:
        if (directory / FULL_RELATIONS).is_file():
            pairs = read_measured_by(directory / FULL_RELATIONS)
        elif (directory / RELATIONSHIPS).is_file():
            pairs = read_relationships(directory / RELATIONSHIPS)
        else:
            raise InputError(
                f"the full ontology needs {directory / FULL_RELATIONS} or {directory / RELATIONSHIPS} "
                "(measuredBy relations)"
            )
        links = orient_pairs(pairs, tasks["task_id"], concepts["concept_id"])
    meta = {"source": str(directory), "subset": bool(reduced), "reduced": bool(reduced),
            "overrides_applied": len(overrides)}
    return Ontology(tasks.reset_index(drop=True), concepts, default_domains(), links.reset_index(drop=True), meta)


def _reduced(path: Path, tasks: pd.DataFrame, concepts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not path.is_file():
        raise InputError(f"the reduced ontology needs {path}")
    pairs = read_reduced_tasks(path)
    task_ids = {_key(n): i for n, i in zip(tasks["name"], tasks["task_id"])}
    concept_ids = {_key(n): i for n, i in zip(concepts["name"], concepts["concept_id"])}
    unknown_t = sorted({t for t in pairs["task"] if _key(t) not in task_ids})
    unknown_c = sorted({c for c in pairs["concept"] if c and _key(c) not in concept_ids})
    if unknown_t or unknown_c:
        raise InputError(
            f"{path} names {len(unknown_t)} tasks and {len(unknown_c)} concepts missing from the snapshots "
            f"(or without a definition there): tasks {unknown_t[:5]}, concepts {unknown_c[:5]}"
        )
    keep = {task_ids[_key(t)] for t in pairs["task"]}
    links = pd.DataFrame(
        {"task_id": [task_ids[_key(t)] for t, c in zip(pairs["task"], pairs["concept"]) if c],
         "concept_id": [concept_ids[_key(c)] for c in pairs["concept"] if c]}
    ).drop_duplicates()
    return tasks[tasks["task_id"].isin(keep)], links
