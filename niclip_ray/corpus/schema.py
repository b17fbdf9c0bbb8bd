"""The corpus contract and the checks every reader's output goes through.

Readers return a :class:`RawCorpus` (loose pandas frames plus the problems they met);
:func:`validate` turns it into the contract tables:

``studies``      study_id, pmid, title, abstract, body, source, label, n_analyses, n_peaks
``coordinates``  study_id, analysis_id, x, y, z (MNI mm, float32), space_in
``errors``       study_id, problem, detail, source

A study needs some text (abstract or body) and at least one valid peak; otherwise it is
moved to ``errors`` with the reason. Individual bad peaks (missing or non-numeric values)
are dropped with an error row each; the study keeps its other peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

STUDY_COLUMNS = ["study_id", "pmid", "title", "abstract", "body", "source", "label", "n_analyses", "n_peaks"]
COORDINATE_COLUMNS = ["study_id", "analysis_id", "x", "y", "z", "space_in"]
ERROR_COLUMNS = ["study_id", "problem", "detail", "source"]
TEXT_COLUMNS = ["pmid", "title", "abstract", "body", "label"]


@dataclass
class RawCorpus:
    """What a reader found, before validation.

    ``studies`` needs ``study_id`` and any of :data:`TEXT_COLUMNS`; ``coordinates`` needs
    ``study_id, x, y, z`` and optionally ``analysis_id`` and ``space_in`` (coordinates are
    already in MNI mm; ``space_in`` records what the source said).
    """

    source: str
    studies: pd.DataFrame
    coordinates: pd.DataFrame
    errors: list[dict] = field(default_factory=list)

    def error(self, study_id: str, problem: str, detail: str = "") -> None:
        """Record a problem with one study (or one of its rows)."""
        self.errors.append({"study_id": str(study_id), "problem": problem, "detail": detail, "source": self.source})


@dataclass
class Corpus:
    """Validated corpus tables, sorted by study id."""

    studies: pd.DataFrame
    coordinates: pd.DataFrame
    errors: pd.DataFrame


def _clean_text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("").str.strip().astype(object)


def validate(raw: RawCorpus) -> Corpus:
    """Apply the corpus checks and return the contract tables."""
    studies = raw.studies.copy()
    studies["study_id"] = studies["study_id"].astype(str)
    for column in TEXT_COLUMNS:
        studies[column] = _clean_text(studies[column]) if column in studies else ""

    duplicated = studies["study_id"].duplicated(keep="first")
    for sid in studies.loc[duplicated, "study_id"]:
        raw.error(sid, "duplicate study id", "kept the first occurrence")
    studies = studies.loc[~duplicated]

    coords = raw.coordinates.copy()
    coords["study_id"] = coords["study_id"].astype(str)
    if "analysis_id" not in coords:
        coords["analysis_id"] = coords["study_id"]
    coords["analysis_id"] = coords["analysis_id"].astype(str)
    if "space_in" not in coords:
        coords["space_in"] = "MNI"
    coords["space_in"] = coords["space_in"].astype("string").fillna("UNKNOWN").astype(object)
    for axis in "xyz":
        coords[axis] = pd.to_numeric(coords[axis], errors="coerce") if axis in coords else np.nan
    bad = ~np.isfinite(coords[["x", "y", "z"]].to_numpy(dtype=float)).all(axis=1)
    for row in coords.loc[bad].itertuples():
        raw.error(row.study_id, "invalid coordinate", f"analysis {row.analysis_id}: ({row.x}, {row.y}, {row.z})")
    coords = coords.loc[~bad]

    known = set(studies["study_id"])
    orphan = ~coords["study_id"].isin(known)
    for sid in sorted(set(coords.loc[orphan, "study_id"])):
        raw.error(sid, "peaks without a study", "no metadata or text for this study id")
    coords = coords.loc[~orphan]

    n_peaks = coords.groupby("study_id").size()
    n_analyses = coords.groupby("study_id")["analysis_id"].nunique()
    studies["n_peaks"] = studies["study_id"].map(n_peaks).fillna(0).astype("int64")
    studies["n_analyses"] = studies["study_id"].map(n_analyses).fillna(0).astype("int64")
    no_text = (studies["abstract"] == "") & (studies["body"] == "")
    no_peaks = studies["n_peaks"] == 0
    for sid in studies.loc[no_text, "study_id"]:
        raw.error(sid, "no text", "neither an abstract nor a body")
    for sid in studies.loc[no_peaks & ~no_text, "study_id"]:
        raw.error(sid, "no peaks", "no valid coordinates")
    studies = studies.loc[~(no_text | no_peaks)]
    coords = coords.loc[coords["study_id"].isin(set(studies["study_id"]))]

    studies = studies.assign(source=raw.source)[STUDY_COLUMNS].sort_values("study_id", kind="stable")
    coords = coords[COORDINATE_COLUMNS].sort_values(["study_id", "analysis_id"], kind="stable")
    coords = coords.astype({"x": "float32", "y": "float32", "z": "float32"})
    errors = pd.DataFrame(raw.errors, columns=ERROR_COLUMNS)
    return Corpus(studies.reset_index(drop=True), coords.reset_index(drop=True), errors.reset_index(drop=True))
