"""Reader for pubget output (``metadata.csv``, ``coordinates.csv``, ``text.csv``).

pubget keys everything by ``pmcid``; the study id is the PMID when pubget found one,
``PMC<pmcid>`` otherwise. The full text (``body``) is kept: NiCLIP's best model uses it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from niclip_ray.corpus.csvio import read_csv_tolerant
from niclip_ray.corpus.schema import RawCorpus
from niclip_ray.errors import InputError

FILES = ("metadata.csv", "coordinates.csv", "text.csv")


def find_pubget_dir(path: Path) -> Path | None:
    """The directory holding pubget's CSVs: ``path`` or one of its sub-directories."""
    for candidate in [path, *sorted(p for p in path.glob("*") if p.is_dir())]:
        if (candidate / "coordinates.csv").is_file() and (candidate / "metadata.csv").is_file():
            return candidate
    return None


def read_pubget_dir(path: Path, source: str) -> RawCorpus:
    """Read a pubget extracted-data directory.

    A bad CSV row is an error row naming the file and line, filed under its study when its
    ``pmcid`` is readable. ``text.csv`` is optional: when it cannot be read at all (empty,
    no ``pmcid`` column) that is one error row, and the studies are kept without texts.
    """
    root = find_pubget_dir(path)
    if root is None:
        raise InputError(f"{path} has no pubget metadata.csv and coordinates.csv")
    raw = RawCorpus(source, pd.DataFrame(), pd.DataFrame())
    metadata, bad = read_csv_tolerant(root / "metadata.csv", ["pmcid"], key="pmcid")
    bad_rows = [("metadata.csv", row) for row in bad]
    text_path = root / "text.csv"
    if text_path.is_file():
        try:
            texts, bad = read_csv_tolerant(text_path, ["pmcid"], key="pmcid")
        except InputError as exc:
            raw.error("?", "unreadable text.csv", str(exc))
        else:
            bad_rows += [("text.csv", row) for row in bad]
            metadata = metadata.merge(texts.drop(columns=["title"], errors="ignore"), on="pmcid", how="left")
    coords, bad = read_csv_tolerant(root / "coordinates.csv", ["pmcid", "x", "y", "z"], key="pmcid")
    bad_rows += [("coordinates.csv", row) for row in bad]

    pmid = metadata["pmid"] if "pmid" in metadata else pd.Series("", index=metadata.index)
    ids = pmid.where(pmid.str.strip() != "", "PMC" + metadata["pmcid"].astype(str))
    id_of = dict(zip(metadata["pmcid"], ids))
    for name, row in bad_rows:
        raw.error(id_of.get(row.key, f"PMC{row.key}") if row.key else "?", row.problem, row.detail(name))
    raw.studies = metadata.assign(study_id=ids, pmid=pmid, record="pmcid " + metadata["pmcid"])
    coords = coords.assign(
        study_id=coords["pmcid"].map(lambda p: id_of.get(p, f"PMC{p}")),
        analysis_id=coords["pmcid"] + "-" + coords.get("table_id", pd.Series("", index=coords.index)),
        space_in="MNI",
        record="pmcid " + coords["pmcid"],
    )
    raw.coordinates = coords
    return raw
