"""Readers for NiMARE inputs: Studyset parquet directories, Dataset JSON and pickles."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from niclip_ray.corpus.schema import RawCorpus
from niclip_ray.corpus.spaces import to_mni
from niclip_ray.errors import InputError
from niclip_ray.tables import read_parquet_checked

#: Real data shipped inside the nimare wheel, addressable as ``nimare:NAME``.
SHIPPED = {
    "nback_vs_flanker": "nback_vs_flanker_studyset_2026-07",
    "neurosynth_laird": "neurosynth_laird_studies.json",
}


def shipped_path(name: str) -> Path:
    """Path of a dataset shipped with nimare (``nimare:NAME``)."""
    from nimare.utils import get_resource_path

    if name not in SHIPPED:
        raise InputError(f"unknown shipped dataset nimare:{name}; known: {', '.join('nimare:' + k for k in SHIPPED)}")
    path = Path(get_resource_path()) / SHIPPED[name]
    if not path.exists():
        raise InputError(f"nimare:{name} is not in this nimare installation ({path})")
    return path


def is_studyset_dir(path: Path) -> bool:
    """A NiMARE Studyset parquet directory has ``studies`` and ``coordinates`` tables."""
    return (path / "studies.parquet").is_file() and (path / "coordinates.parquet").is_file()


def read_studyset_dir(path: Path, source: str) -> RawCorpus:
    """Read a NiMARE Studyset parquet directory (NeuroStore export), one row per study.

    Abstracts live in ``studies.description`` and are joined onto the study; peaks of all
    analyses of a study are pooled; Talairach peaks are converted to MNI. A study-level
    task label comes from ``metadata.comparison_task`` when present.
    """
    studies = read_parquet_checked(path / "studies.parquet").to_pandas()
    for column in ("study_id", "name", "description"):
        if column not in studies:
            studies[column] = "" if column != "study_id" else None
    if studies["study_id"].isna().any():
        raise InputError(f"{path / 'studies.parquet'} has studies without a study_id")
    studies = studies.rename(columns={"name": "title", "description": "abstract"})
    texts_path = path / "texts.parquet"
    if texts_path.is_file():
        texts = read_parquet_checked(texts_path).to_pandas()
        for column in ("abstract", "body"):
            if column in texts:
                joined = texts.dropna(subset=[column]).groupby("study_id")[column].first()
                existing = studies[column] if column in studies else pd.Series("", index=studies.index)
                studies[column] = existing.where(existing.fillna("") != "", studies["study_id"].map(joined))
    metadata_path = path / "metadata.parquet"
    if metadata_path.is_file():
        metadata = read_parquet_checked(metadata_path).to_pandas()
        for src, dst in (("comparison_task", "label"), ("pmid", "pmid")):
            if src in metadata and dst not in studies:
                values = metadata.dropna(subset=[src]).astype({src: str}).groupby("study_id")[src]
                studies[dst] = studies["study_id"].map(values.agg(lambda v: " | ".join(sorted(set(v)))))
    coords = read_parquet_checked(path / "coordinates.parquet").to_pandas()
    missing = [c for c in ("study_id", "x", "y", "z") if c not in coords]
    if missing:
        raise InputError(f"{path / 'coordinates.parquet'} lacks column(s) {', '.join(missing)}")
    coords = coords.rename(columns={"id": "analysis_id", "space": "space_in"})
    if "space_in" not in coords:
        coords["space_in"] = "MNI"
    coords["space_in"] = coords["space_in"].fillna("UNKNOWN")
    return RawCorpus(source, studies, to_mni(coords))


def read_dataset_json(path: Path, source: str) -> RawCorpus:
    """Read a NiMARE Dataset JSON (``{study: {metadata, contrasts: {id: {coords, text}}}}``)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read NiMARE Dataset JSON {path}: {exc}") from exc
    if not isinstance(content, dict):
        raise InputError(f"{path} is not a NiMARE Dataset JSON (expected an object of studies)")
    raw = RawCorpus(source, pd.DataFrame(), pd.DataFrame())
    studies, coords = [], []
    for sid, study in content.items():
        if not isinstance(study, dict) or not isinstance(study.get("contrasts"), dict):
            raw.error(sid, "malformed study", "expected an object with 'contrasts'")
            continue
        meta = study.get("metadata") or {}
        row = {"study_id": str(sid), "title": meta.get("title", ""), "pmid": meta.get("pmid", "")}
        if not row["pmid"] and str(sid).isdigit():
            row["pmid"] = str(sid)
        for cid, contrast in study["contrasts"].items():
            text = contrast.get("text") or {}
            for column in ("abstract", "body", "title"):
                if text.get(column) and not row.get(column):
                    row[column] = text[column]
            points = contrast.get("coords") or {}
            xs, ys, zs = (points.get(axis) or [] for axis in "xyz")
            if not len(xs) == len(ys) == len(zs):
                raw.error(sid, "malformed coordinates", f"contrast {cid}: x, y, z lengths differ")
                continue
            space = points.get("space", "UNKNOWN")
            coords += [
                {"study_id": str(sid), "analysis_id": f"{sid}-{cid}", "x": x, "y": y, "z": z, "space_in": space}
                for x, y, z in zip(xs, ys, zs)
            ]
        studies.append(row)
    raw.studies = pd.DataFrame(studies, columns=["study_id", "pmid", "title", "abstract", "body"])
    frame = pd.DataFrame(coords, columns=["study_id", "analysis_id", "x", "y", "z", "space_in"])
    raw.coordinates = to_mni(frame)
    return raw


def read_dataset_pickle(path: Path, source: str) -> RawCorpus:
    """Read a pickled NiMARE Dataset (``.pkl``/``.pkl.gz``); the caller must allow pickles."""
    from nimare.dataset import Dataset

    try:
        dset = Dataset.load(str(path))
    except Exception as exc:  # unpickling can fail in many ways; name the file
        raise InputError(f"cannot load NiMARE Dataset pickle {path}: {exc}") from exc
    texts = dset.texts.copy() if dset.texts is not None else pd.DataFrame(columns=["study_id"])
    metadata = dset.metadata.copy() if dset.metadata is not None else pd.DataFrame(columns=["study_id"])
    studies = pd.DataFrame({"study_id": sorted(set(dset.coordinates["study_id"]) | set(texts.get("study_id", [])))})
    for frame in (texts, metadata):
        for column in ("title", "abstract", "body", "pmid"):
            if column in frame and column not in studies:
                first = frame.dropna(subset=[column]).groupby("study_id")[column].first()
                studies[column] = studies["study_id"].map(first)
    coords = dset.coordinates.rename(columns={"id": "analysis_id"})
    coords["space_in"] = dset.space  # NiMARE already converted every peak to this space
    return RawCorpus(source, studies, coords)
