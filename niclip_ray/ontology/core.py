"""The :class:`Ontology` object: tasks, concepts, domains and their links as sparse matrices.

An ontology is stored on disk in a small *native* layout (four CSV files and a JSON
header) that the shipped offline subset, model bundles and ``load_ontology`` share:

``meta.json``
    ``{"format": "niclip-ontology", "version": 1, "source": ..., "subset": bool, ...}``
``tasks.csv``
    ``task_id, name, definition`` in vocabulary order.
``concepts.csv``
    ``concept_id, name, definition, domain_id`` (domain may be empty).
``domains.csv``
    ``domain_id, name`` (the Cognitive Atlas concept classes ``ctp_C1`` .. ``ctp_C10``).
``task_concepts.csv``
    ``task_id, concept_id``: one row per ``measuredBy`` link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from niclip_ray.atomic import write_csv, write_json
from niclip_ray.errors import InputError

FORMAT = "niclip-ontology"
META_FILE = "meta.json"

#: The ten Cognitive Atlas concept classes ("mental process" domains).
DOMAINS: dict[str, str] = {
    "ctp_C1": "Perception",
    "ctp_C2": "Attention",
    "ctp_C3": "Reasoning and decision making",
    "ctp_C4": "Executive cognitive control",
    "ctp_C5": "Learning and memory",
    "ctp_C6": "Language",
    "ctp_C7": "Action",
    "ctp_C8": "Emotion",
    "ctp_C9": "Social function",
    "ctp_C10": "Motivation",
}


def default_domains() -> pd.DataFrame:
    """The ten Cognitive Atlas domains as a ``domain_id, name`` frame."""
    return pd.DataFrame({"domain_id": list(DOMAINS), "name": list(DOMAINS.values())})


@dataclass(frozen=True)
class Ontology:
    """Cognitive Atlas tasks, concepts and domains with their hierarchy.

    Parameters
    ----------
    tasks : DataFrame
        ``task_id, name, definition``; row order is the vocabulary order.
    concepts : DataFrame
        ``concept_id, name, definition, domain_id``.
    domains : DataFrame
        ``domain_id, name``.
    task_concepts : DataFrame
        ``task_id, concept_id`` edges (``measuredBy``); ids must exist in the tables above.
    meta : dict
        Provenance: ``source``, ``subset`` and free-form notes.
    """

    tasks: pd.DataFrame
    concepts: pd.DataFrame
    domains: pd.DataFrame
    task_concepts: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, frame, cols in (
            ("tasks", self.tasks, ["task_id", "name", "definition"]),
            ("concepts", self.concepts, ["concept_id", "name", "definition", "domain_id"]),
            ("domains", self.domains, ["domain_id", "name"]),
            ("task_concepts", self.task_concepts, ["task_id", "concept_id"]),
        ):
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise InputError(f"ontology {name} table lacks columns {missing}")
        for name, ids in (("task", self.tasks["task_id"]), ("concept", self.concepts["concept_id"])):
            dupes = ids[ids.duplicated()].tolist()
            if dupes:
                raise InputError(f"ontology has duplicate {name} ids: {dupes[:5]}")
        unknown_t = set(self.task_concepts["task_id"]) - set(self.tasks["task_id"])
        unknown_c = set(self.task_concepts["concept_id"]) - set(self.concepts["concept_id"])
        if unknown_t or unknown_c:
            raise InputError(
                f"ontology links name unknown tasks {sorted(unknown_t)[:5]} or concepts {sorted(unknown_c)[:5]}"
            )
        dom = set(self.concepts["domain_id"].replace("", np.nan).dropna()) - set(self.domains["domain_id"])
        if dom:
            raise InputError(f"ontology concepts use unknown domains {sorted(dom)}")

    @property
    def task_names(self) -> list[str]:
        """Task names in vocabulary order."""
        return self.tasks["name"].tolist()

    @property
    def task_concept_matrix(self) -> sp.csr_matrix:
        """``(n_tasks, n_concepts)`` float64 CSR incidence matrix (1 where a task measures a concept)."""
        t_index = pd.Index(self.tasks["task_id"])
        c_index = pd.Index(self.concepts["concept_id"])
        edges = self.task_concepts.drop_duplicates()
        rows = t_index.get_indexer(edges["task_id"])
        cols = c_index.get_indexer(edges["concept_id"])
        data = np.ones(len(edges))
        return sp.csr_matrix((data, (rows, cols)), shape=(len(t_index), len(c_index)))

    @property
    def concept_domain_matrix(self) -> sp.csr_matrix:
        """``(n_concepts, n_domains)`` float64 CSR incidence matrix (concept belongs to domain)."""
        d_index = pd.Index(self.domains["domain_id"])
        cols = d_index.get_indexer(self.concepts["domain_id"].fillna(""))
        rows = np.flatnonzero(cols >= 0)
        data = np.ones(len(rows))
        return sp.csr_matrix((data, (rows, cols[rows])), shape=(len(self.concepts), len(d_index)))

    def concepts_of(self, task_name: str) -> list[str]:
        """Names of the concepts a task measures (empty if the task is unknown)."""
        ids = self.tasks.loc[self.tasks["name"] == task_name, "task_id"]
        linked = self.task_concepts.loc[self.task_concepts["task_id"].isin(ids), "concept_id"]
        return self.concepts.loc[self.concepts["concept_id"].isin(linked), "name"].tolist()

    def summary(self) -> str:
        """One line: counts and provenance."""
        kind = "subset" if self.meta.get("subset") else "snapshot"
        return (
            f"{len(self.tasks)} tasks, {len(self.concepts)} concepts, {len(self.domains)} domains, "
            f"{len(self.task_concepts)} task-concept links ({kind}: {self.meta.get('source', 'unknown')})"
        )


def save_ontology(ontology: Ontology, out_dir: str | Path) -> Path:
    """Write ``ontology`` in the native layout and return the directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "tasks.csv", ontology.tasks[["task_id", "name", "definition"]])
    write_csv(out_dir / "concepts.csv", ontology.concepts[["concept_id", "name", "definition", "domain_id"]])
    write_csv(out_dir / "domains.csv", ontology.domains[["domain_id", "name"]])
    write_csv(out_dir / "task_concepts.csv", ontology.task_concepts[["task_id", "concept_id"]])
    write_json(out_dir / META_FILE, {"format": FORMAT, "version": 1, **ontology.meta}, indent=2, sort_keys=True)
    return out_dir


def is_native(directory: str | Path) -> bool:
    """True when ``directory`` holds an ontology in the native layout."""
    meta = Path(directory) / META_FILE
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT
    except json.JSONDecodeError:
        return False


def read_native(directory: str | Path) -> Ontology:
    """Read an ontology written by :func:`save_ontology`.

    Raises
    ------
    InputError
        When a file is missing or malformed; the message names it.
    """
    directory = Path(directory)
    tables = {}
    for name in ("tasks", "concepts", "domains", "task_concepts"):
        path = directory / f"{name}.csv"
        try:
            tables[name] = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"cannot read ontology table {path}: {exc}") from exc
    meta = json.loads((directory / META_FILE).read_text())
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    return Ontology(meta=meta, **tables)
