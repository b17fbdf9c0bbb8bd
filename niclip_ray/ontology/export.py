"""Reader for the Cognitive Atlas knowledge base as exported to JSON (``*Collection.json``).

The Cognitive Atlas project's JSON export (``legacy_cogat_linkml``, ``src/data/``) holds one
``{"entries": [...]}`` file per kind of entry. This module reads:

``TaskCollection.json``
    Tasks (``id``, ``name``, ``definition_text``), their ``asserts`` (concept ids) and
    ``has_contrast`` (the ids of the task's contrasts; a contrast belongs to one task).
``ConceptCollection.json``
    Concepts (``id``, ``name``, ``definition_text``), their class ``id_concept_class``
    (``ctp_C1`` .. ``ctp_C10``; the domain, empty for most) and ``measured_by`` (contrast ids).
``ConceptClassCollection.json`` (optional)
    The ten classes, the paper's domains; without it, the names of
    :data:`~niclip_ray.ontology.core.DOMAINS`.
``AssertionCollection.json`` (optional)
    An "X is measured by the contrast of ... in task T" assertion has the concept as
    ``subject`` and the contrast as ``predicate_def``.

A task measures a concept when the task ``asserts`` it, or when the concept is measured by
one of the task's contrasts (the concept's ``measured_by`` or a measured-by assertion;
``truth_value`` "negative" assertions excluded). The contrast and condition collections are
not needed: a contrast is known by its id on both sides.

As the reference does, tasks and concepts with an empty name or definition are dropped.
Vocabulary names must be unique, so a task whose name repeats an earlier one
(case-insensitively) is dropped with a warning, with its links; a concept whose name repeats
an earlier one is merged into it (its links go to the first).

The **full** set keeps every remaining task, in file order. The **reduced** set keeps the
tasks the atlas links to at least one concept (the spirit of the paper's reduced set: tasks
whose measured concepts are known); concepts and domains are the same in both sets.

On the export of commit 15052ad (853 tasks, 915 concepts, all concepts defined, 505 with
a class): over all 853 tasks the links number 1,422 over 559 tasks (1,237 from ``asserts``
over 477). Dropping 2 tasks without a name or a definition and 2 repeated names ("False
Belief task", "Boston Naming Test") leaves 849 tasks (the full set) and 1,419 links over
557 tasks (the reduced set): 1,234 from ``asserts`` over 475 tasks, 185 more from contrasts.
The measured-by assertions add no link beyond the concepts' ``measured_by`` there. Four
concepts repeat an earlier name ("implicit learning", "risk aversion", "autobiographical
memory", "Cognitive warfare") and are merged, leaving 911 concepts; the links stay 1,419.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd

from niclip_ray.errors import InputError
from niclip_ray.ontology.core import DOMAINS, Ontology, default_domains

TASKS = "TaskCollection.json"
CONCEPTS = "ConceptCollection.json"
CLASSES = "ConceptClassCollection.json"
ASSERTIONS = "AssertionCollection.json"
SOURCE = "cognitive-atlas-export"
FULL_RULE = "every task with a name and a definition (first of each name)"
REDUCED_RULE = FULL_RULE + " that measures at least one concept"
log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _loose(name: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.casefold()).split())


def _text(entry: dict, field: str) -> str:
    return str(entry.get(field) or "").strip()


def _ids(entry: dict, field: str) -> list[str]:
    value = entry.get(field) or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _entries(path: Path) -> list[dict]:
    """The ``entries`` of one export file; each must be an object with a unique ``id``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read Cognitive Atlas export file {path}: {exc}") from exc
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f'{path} should hold {{"entries": [...]}}, a list of objects (Cognitive Atlas JSON export)')
    seen = set()
    for number, entry in enumerate(entries):
        entry_id = _text(entry, "id")
        if not entry_id or entry_id in seen:
            problem = "repeats the id " + entry_id if entry_id else "has no id"
            raise InputError(f"{path}: entry {number} ({_text(entry, 'name')!r}) {problem}")
        seen.add(entry_id)
    return entries


def _tasks(entries: list[dict], path: Path) -> tuple[pd.DataFrame, dict]:
    rows, first, repeated = [], {}, []
    for entry in entries:
        name, definition = _text(entry, "name"), _text(entry, "definition_text")
        if not name or not definition:
            continue
        if _key(name) in first:
            log.info("%s: task %r (%s) repeats the name of %r; keeping the first", path, name, entry["id"],
                        first[_key(name)])
            repeated.append(name)
            continue
        first[_key(name)] = name
        rows.append({"task_id": _text(entry, "id"), "name": name, "definition": definition})
    tasks = pd.DataFrame(rows, columns=["task_id", "name", "definition"])
    return tasks, {"undefined_tasks": len(entries) - len(rows) - len(repeated), "repeated_task_names": repeated}


def _concepts(entries: list[dict], path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Defined concepts, the first of each name; and the id of each later namesake -> the kept id."""
    rows, first, alias = [], {}, {}
    for e in entries:
        name = _text(e, "name")
        if not name or not _text(e, "definition_text"):
            continue
        if _key(name) in first:
            alias[_text(e, "id")] = first[_key(name)]
            continue
        first[_key(name)] = _text(e, "id")
        rows.append({"concept_id": _text(e, "id"), "name": name, "definition": _text(e, "definition_text"),
                     "domain_id": _text(e, "id_concept_class")})
    if alias:
        log.info("%s: %d concepts repeat an earlier concept's name; their links go to the first", path, len(alias))
    concepts = pd.DataFrame(rows, columns=["concept_id", "name", "definition", "domain_id"])
    unknown = sorted(set(concepts["domain_id"]) - set(DOMAINS) - {""})
    if unknown:
        log.warning("%s: concept classes %s are not among the 10 domains; those concepts get no domain", path, unknown)
        concepts.loc[concepts["domain_id"].isin(unknown), "domain_id"] = ""
    return concepts, alias


def _domains(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return default_domains()
    names = {_text(e, "id"): _text(e, "name") for e in _entries(path)}
    if set(names) != set(DOMAINS):
        raise InputError(f"{path} lists the classes {sorted(names)}; expected the ten {list(DOMAINS)}")
    renamed = {i: n for i, n in names.items() if _loose(n) != _loose(DOMAINS[i])}
    if renamed:
        log.warning("%s names the classes %s differently from niclip-ray's domains; using the file's names", path, renamed)
    return pd.DataFrame({"domain_id": list(DOMAINS), "name": [names[i] for i in DOMAINS]})


def _links(tasks: list[dict], concepts: list[dict], assertions: list[dict]) -> pd.DataFrame:
    """``task_id, concept_id`` pairs (unfiltered): the tasks' ``asserts`` and their contrasts' concepts."""
    owner = {contrast: _text(t, "id") for t in tasks for contrast in _ids(t, "has_contrast")}
    measured = {(k, _text(c, "id")) for c in concepts for k in _ids(c, "measured_by")}
    measured |= {
        (k, s)
        for a in assertions
        if _text(a, "truth_value") != "negative"
        for k in _ids(a, "predicate_def")
        for s in _ids(a, "subject")
    }
    pairs = [(_text(t, "id"), c) for t in tasks for c in _ids(t, "asserts")]
    pairs += [(owner[k], c) for k, c in measured if k in owner]
    return pd.DataFrame(pairs, columns=["task_id", "concept_id"])


def is_export_dir(directory: str | Path) -> bool:
    """True when ``directory`` holds the Cognitive Atlas JSON export (task and concept collections)."""
    directory = Path(directory)
    return (directory / TASKS).is_file() and (directory / CONCEPTS).is_file()


def read_export_dir(directory: str | Path, reduced: bool = False) -> Ontology:
    """Build an ontology from the Cognitive Atlas JSON export.

    Parameters
    ----------
    directory : path
        Holds ``TaskCollection.json`` and ``ConceptCollection.json``, and optionally
        ``ConceptClassCollection.json`` and ``AssertionCollection.json`` (see the module
        docstring for what each contributes).
    reduced : bool
        Keep only the tasks linked to at least one concept (default: every task with a name
        and a definition).

    Returns
    -------
    Ontology
        Tasks in file order (undefined entries and repeated names dropped), every defined
        concept with its class as ``domain_id`` (empty when none), the ten domains with the
        file's names, the deduplicated task → concept links ordered by task then concept,
        and ``meta`` (``source``, ``path``, ``reduced``, ``rule``, ``counts``).

    Raises
    ------
    InputError
        When a file is not JSON, lacks an ``entries`` list of objects, has an entry without
        an id or with a repeated id, or names classes other than ``ctp_C1`` .. ``ctp_C10``;
        the message names the file.
    """
    directory = Path(directory)
    task_entries = _entries(directory / TASKS)
    concept_entries = _entries(directory / CONCEPTS)
    assertions = _entries(directory / ASSERTIONS) if (directory / ASSERTIONS).is_file() else []
    tasks, dropped = _tasks(task_entries, directory / TASKS)
    concepts, alias = _concepts(concept_entries, directory / CONCEPTS)
    domains = _domains(directory / CLASSES)

    t_index, c_index = pd.Index(tasks["task_id"]), pd.Index(concepts["concept_id"])
    links = _links(task_entries, concept_entries, assertions)
    links["concept_id"] = links["concept_id"].replace(alias)
    links = links.drop_duplicates()
    order = pd.DataFrame({"t": t_index.get_indexer(links["task_id"]), "c": c_index.get_indexer(links["concept_id"])})
    order = order[(order["t"] >= 0) & (order["c"] >= 0)].sort_values(["t", "c"])
    links = pd.DataFrame({"task_id": t_index[order["t"].to_numpy()], "concept_id": c_index[order["c"].to_numpy()]})
    if reduced:
        tasks = tasks[tasks["task_id"].isin(links["task_id"])].reset_index(drop=True)

    counts = {"tasks": len(tasks), "concepts": len(concepts), "domains": len(domains), "links": len(links),
              "tasks_with_links": int(links["task_id"].nunique()), **dropped}
    meta = {"source": SOURCE, "path": str(directory), "subset": bool(reduced), "reduced": bool(reduced),
            "rule": REDUCED_RULE if reduced else FULL_RULE, "counts": counts}
    return Ontology(tasks, concepts, domains, links, meta)
