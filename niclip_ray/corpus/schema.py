"""The corpus contract and the checks every reader's output goes through.

Readers return a :class:`RawCorpus` (loose pandas frames plus the problems they met);
:func:`validate` turns it into the contract tables:

``studies``      study_id, pmid, doi, title, abstract, body, keywords, source, peaks_from,
                 label, n_analyses, n_peaks
``coordinates``  study_id, analysis_id, x, y, z (MNI mm, float32), space_in
``errors``       study_id, problem, detail, source

``keywords`` is a study's keyword document (terms joined with ", "), ``peaks_from`` the
database that gave its peaks (``neurosynth`` or ``neuroquery``); both, and ``doi``, are
empty when a source has none.

A study id holding a control character (:mod:`niclip_ray.controls`: NUL, ESC, newline, a
zero-width or bidirectional mark, ...) is refused: the study is moved to ``errors`` with
its peaks, and a peak whose analysis id holds one is dropped. Error rows show such
characters escaped (``2\\x0022``), never raw.

A study needs some text (by default an abstract or a body; a reader may name other
columns, :attr:`RawCorpus.text_columns`) and at least one valid peak; otherwise it is
moved to ``errors`` with the reason. Individual bad peaks (missing or non-numeric values,
values that do not fit float32, or a peak more than :data:`MNI_MARGIN_MM` outside the
MNI152 box :data:`MNI_BOX_MM` on any axis) are dropped with an error row each, quoting the
values as the source wrote them; the study keeps its other peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from niclip_ray.controls import control_characters, escape_controls

STUDY_COLUMNS = [
    "study_id", "pmid", "doi", "title", "abstract", "body", "keywords", "source", "peaks_from", "label",
    "n_analyses", "n_peaks",
]
COORDINATE_COLUMNS = ["study_id", "analysis_id", "x", "y", "z", "space_in"]
ERROR_COLUMNS = ["study_id", "problem", "detail", "source"]
#: String columns of ``studies``: "" when a reader does not give them.
TEXT_COLUMNS = ["pmid", "doi", "title", "abstract", "body", "keywords", "peaks_from", "label"]

#: The MNI152 2 mm template's box in mm per axis (91 x 109 x 91 voxels from (-90, -126, -72)).
MNI_BOX_MM = {"x": (-90.0, 90.0), "y": (-126.0, 90.0), "z": (-72.0, 108.0)}
#: A peak further than this outside :data:`MNI_BOX_MM`, on any axis, is not in a head and is
#: dropped. On the real databases this drops no Neurosynth v7 peak and 16 of NeuroQuery v1's
#: 469,260 (table misreadings such as y = 148); 30 mm would drop 74, 100 mm none.
MNI_MARGIN_MM = 50.0

#: How a "no text" error names each column a study may take its text from.
_TEXT_NAMES = {"abstract": "an abstract", "body": "a body", "title": "a title", "keywords": "keywords"}


@dataclass
class RawCorpus:
    """What a reader found, before validation.

    ``studies`` needs ``study_id`` and any of :data:`TEXT_COLUMNS`; ``coordinates`` needs
    ``study_id, x, y, z`` and optionally ``analysis_id`` and ``space_in`` (coordinates are
    already in MNI mm; ``space_in`` records what the source said). Both may carry a
    ``record`` column naming the source record a row came from (``pmcid 1012``): when a
    duplicate study id is dropped, the peaks of its record go with it.

    ``text_columns`` are the study columns that count as its text: a study with all of
    them empty is an error ("no text").
    """

    source: str
    studies: pd.DataFrame
    coordinates: pd.DataFrame
    errors: list[dict] = field(default_factory=list)
    text_columns: tuple[str, ...] = ("abstract", "body")

    def error(self, study_id: str, problem: str, detail: str = "") -> None:
        """Record a problem with one study (or one of its rows); control characters are escaped."""
        self.errors.append({"study_id": escape_controls(str(study_id)), "problem": problem,
                            "detail": escape_controls(detail), "source": self.source})


@dataclass
class Corpus:
    """Validated corpus tables, sorted by study id."""

    studies: pd.DataFrame
    coordinates: pd.DataFrame
    errors: pd.DataFrame


def _clean_text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("").str.strip().astype(object)


def _drop_control_ids(raw: RawCorpus, studies: pd.DataFrame, coords: pd.DataFrame):
    """Drop studies whose id holds a control character, with their peaks, and peaks whose analysis id does."""
    ids = pd.concat([studies["study_id"], coords["study_id"]]).drop_duplicates()
    found = {sid: chars for sid, chars in zip(ids, ids.map(control_characters)) if chars}
    for sid, chars in found.items():
        n_peaks = int((coords["study_id"] == sid).sum())
        raw.error(sid, "invalid study id", f"the id holds the control character(s) {''.join(chars)}; the study is "
                                           f"dropped with its {n_peaks} peak(s)")
    studies = studies.loc[~studies["study_id"].isin(found)]
    coords = coords.loc[~coords["study_id"].isin(found)]
    analyses = coords["analysis_id"].drop_duplicates()
    bad = {aid: chars for aid, chars in zip(analyses, analyses.map(control_characters)) if chars}
    for row in coords.loc[coords["analysis_id"].isin(bad)].itertuples():
        raw.error(row.study_id, "invalid analysis id",
                  f"analysis {row.analysis_id} holds the control character(s) {''.join(bad[row.analysis_id])}; "
                  "its peak is dropped")
    return studies, coords.loc[~coords["analysis_id"].isin(bad)]


def _drop_duplicates(raw: RawCorpus, studies: pd.DataFrame, coords: pd.DataFrame):
    """Keep the first study of each id; drop the others, and their record's peaks."""
    duplicated = studies["study_id"].duplicated(keep="first")
    if not duplicated.any():
        return studies, coords
    records = "record" in studies and "record" in coords
    kept = studies.loc[~duplicated].set_index("study_id")["record"] if records else None
    for row in studies.loc[duplicated].itertuples(index=False):
        detail = "kept the first occurrence"
        if records and row.record != kept[row.study_id]:
            own = (coords["record"] == row.record).to_numpy()
            detail += f" ({kept[row.study_id]}); dropped {row.record} with its {int(own.sum())} peak(s)"
            coords = coords.loc[~own]
        raw.error(row.study_id, "duplicate study id", detail)
    return studies.loc[~duplicated], coords


def _check_coordinates(raw: RawCorpus, coords: pd.DataFrame) -> pd.DataFrame:
    """Drop peaks whose x, y or z is missing, not a number, not finite as float32, or far outside the MNI box."""
    given = {axis: coords[axis] if axis in coords else pd.Series(np.nan, index=coords.index) for axis in "xyz"}
    numeric = np.column_stack([pd.to_numeric(given[a], errors="coerce").to_numpy(dtype=float) for a in "xyz"])
    with np.errstate(over="ignore"):
        as_float32 = numeric.reshape(-1, 3).astype(np.float32)
    implausible = ~_in_head(as_float32)
    bad = implausible.any(axis=1)
    for i in np.flatnonzero(bad):
        values = [given[a].iloc[i] for a in "xyz"]
        shown = ", ".join("missing" if _missing(v) else str(v) for v in values)
        why = "; ".join(_why_invalid(axis, value, number, cast) for axis, value, number, cast, wrong
                        in zip("xyz", values, numeric[i], as_float32[i], implausible[i]) if wrong)
        raw.error(coords["study_id"].iloc[i], "invalid coordinate",
                  f"analysis {coords['analysis_id'].iloc[i]}: ({shown}): {why}")
    coords = coords.loc[~bad].copy()
    for j, axis in enumerate("xyz"):
        coords[axis] = as_float32[~bad, j]
    return coords


def _in_head(xyz: np.ndarray) -> np.ndarray:
    """Per value of ``(n, 3)`` x, y, z: a number within :data:`MNI_MARGIN_MM` of :data:`MNI_BOX_MM`."""
    low, high = np.array(list(MNI_BOX_MM.values())).T
    with np.errstate(invalid="ignore"):
        return (xyz >= low - MNI_MARGIN_MM) & (xyz <= high + MNI_MARGIN_MM)


def _missing(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or bool(pd.isna(value))


def _why_invalid(axis: str, value, number: float, cast: np.float32) -> str:
    if _missing(value):
        return f"{axis} is missing"
    if np.isnan(number):
        return f"{axis} {str(value)!r} is not a number"
    if not np.isfinite(number):
        return f"{axis} {value} is not finite"
    if not np.isfinite(cast):
        return f"{axis} {value} is beyond float32 (|value| > 3.4e38)"
    low, high = MNI_BOX_MM[axis]
    return f"{axis} {value} is more than {MNI_MARGIN_MM:g} mm outside the MNI152 box ({axis} {low:g} to {high:g} mm)"


def validate(raw: RawCorpus) -> Corpus:
    """Apply the corpus checks and return the contract tables."""
    studies = raw.studies.copy()
    studies["study_id"] = studies["study_id"].astype(str)
    for column in TEXT_COLUMNS:
        studies[column] = _clean_text(studies[column]) if column in studies else ""

    coords = raw.coordinates.copy()
    coords["study_id"] = coords["study_id"].astype(str)
    if "analysis_id" not in coords:
        coords["analysis_id"] = coords["study_id"]
    coords["analysis_id"] = coords["analysis_id"].astype(str)
    if "space_in" not in coords:
        coords["space_in"] = "MNI"
    coords["space_in"] = coords["space_in"].astype("string").fillna("UNKNOWN").astype(object)

    studies, coords = _drop_control_ids(raw, studies, coords)
    studies, coords = _drop_duplicates(raw, studies, coords)
    coords = _check_coordinates(raw, coords)

    known = set(studies["study_id"])
    orphan = ~coords["study_id"].isin(known)
    for sid in sorted(set(coords.loc[orphan, "study_id"])):
        raw.error(sid, "peaks without a study", "no metadata or text for this study id")
    coords = coords.loc[~orphan]

    n_peaks = coords.groupby("study_id").size()
    n_analyses = coords.groupby("study_id")["analysis_id"].nunique()
    studies["n_peaks"] = studies["study_id"].map(n_peaks).fillna(0).astype("int64")
    studies["n_analyses"] = studies["study_id"].map(n_analyses).fillna(0).astype("int64")
    no_text = (studies[list(raw.text_columns)] == "").all(axis=1)
    no_peaks = studies["n_peaks"] == 0
    neither = "neither " + " nor ".join(_TEXT_NAMES.get(c, c) for c in raw.text_columns)
    for sid in studies.loc[no_text, "study_id"]:
        raw.error(sid, "no text", neither)
    for sid in studies.loc[no_peaks & ~no_text, "study_id"]:
        raw.error(sid, "no peaks", "no valid coordinates")
    studies = studies.loc[~(no_text | no_peaks)]
    coords = coords.loc[coords["study_id"].isin(set(studies["study_id"]))]

    studies = studies.assign(source=raw.source)[STUDY_COLUMNS].sort_values("study_id", kind="stable")
    coords = coords[COORDINATE_COLUMNS].sort_values(["study_id", "analysis_id"], kind="stable")
    coords = coords.astype({"x": "float32", "y": "float32", "z": "float32"})
    errors = pd.DataFrame(raw.errors, columns=ERROR_COLUMNS)
    return Corpus(studies.reset_index(drop=True), coords.reset_index(drop=True), errors.reset_index(drop=True))
