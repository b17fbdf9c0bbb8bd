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
    """Read a pubget extracted-data directory."""
    root = find_pubget_dir(path)
    if root is None:
        raise InputError(f"{path} has no pubget metadata.csv and coordinates.csv")
    raw = RawCorpus(source, pd.DataFrame(), pd.DataFrame())
    metadata, bad = read_csv_tolerant(root / "metadata.csv", ["pmcid"])
    for line in bad:
        raw.error("?", "malformed CSV row", f"metadata.csv: {line[:200]}")
    text_path = root / "text.csv"
    if text_path.is_file():
        texts, bad = read_csv_tolerant(text_path, ["pmcid"])
        for line in bad:
            raw.error("?", "malformed CSV row", f"text.csv: {line[:200]}")
        metadata = metadata.merge(texts.drop(columns=["title"], errors="ignore"), on="pmcid", how="left")
    coords, bad = read_csv_tolerant(root / "coordinates.csv", ["pmcid", "x", "y", "z"])
    for line in bad:
        raw.error("?", "malformed CSV row", f"coordinates.csv: {line[:200]}")

    pmid = metadata["pmid"] if "pmid" in metadata else pd.Series("", index=metadata.index)
    ids = pmid.where(pmid.str.strip() != "", "PMC" + metadata["pmcid"].astype(str))
    id_of = dict(zip(metadata["pmcid"], ids))
    raw.studies = metadata.assign(study_id=ids, pmid=pmid)
    coords = coords.assign(
        study_id=coords["pmcid"].map(lambda p: id_of.get(p, f"PMC{p}")),
        analysis_id=coords["pmcid"] + "-" + coords.get("table_id", pd.Series("", index=coords.index)),
        space_in="MNI",
    )
    raw.coordinates = coords
    return raw
