"""Reader for the reference's NeuroStore-style tree.

Layout (one directory per paper, usually named by PMID)::

    ROOT/<pmid>/processed/{pubget,ace}/coordinates.csv   x, y, z (+ optional space)
    ROOT/<pmid>/processed/{pubget,ace}/text.txt          full text (body)
    ROOT/<pmid>/processed/{pubget,ace}/metadata.json     title, abstract, keywords, pmid

pubget's extraction is preferred over ACE's, as in the reference. Unlike the reference,
a Talairach ``space`` column is honoured instead of forcing every peak to MNI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from niclip_ray.corpus.csvio import read_csv_tolerant
from niclip_ray.corpus.schema import RawCorpus
from niclip_ray.corpus.spaces import to_mni
from niclip_ray.errors import InputError

EXTRACTORS = ("pubget", "ace")


def is_neurostore_tree(path: Path) -> bool:
    """True when some sub-directory has a ``processed/`` folder."""
    return any((sub / "processed").is_dir() for sub in path.iterdir() if sub.is_dir())


def read_neurostore_tree(path: Path, source: str) -> RawCorpus:
    """Read every study directory of a NeuroStore-style tree, in sorted order."""
    raw = RawCorpus(source, pd.DataFrame(), pd.DataFrame())
    studies, coords = [], []
    for study_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        sid = study_dir.name
        found = [study_dir / "processed" / e for e in EXTRACTORS if (study_dir / "processed" / e).is_dir()]
        if not found:
            raw.error(sid, "no extraction", f"{study_dir}/processed has neither pubget nor ace")
            continue
        folder = found[0]
        row = {"study_id": sid, "pmid": sid if sid.isdigit() else ""}
        meta_path = folder / "metadata.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raw.error(sid, "malformed metadata.json", f"{meta_path}: {exc}")
            else:
                if isinstance(meta, dict):
                    row.update({k: meta[k] for k in ("title", "abstract") if isinstance(meta.get(k), str)})
                    row["pmid"] = str(meta.get("pmid") or row["pmid"])
                else:
                    raw.error(sid, "malformed metadata.json",
                              f"{meta_path}: expected an object, got a JSON {type(meta).__name__}")
        text_path = folder / "text.txt"
        if text_path.is_file():
            try:
                row["body"] = text_path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raw.error(sid, "text is not UTF-8", f"{text_path}: {exc}")
        studies.append(row)
        try:
            table, bad = read_csv_tolerant(folder / "coordinates.csv", ["x", "y", "z"])
        except InputError as exc:
            raw.error(sid, "unreadable coordinates", str(exc))
            continue
        for bad_row in bad:
            raw.error(sid, bad_row.problem, bad_row.detail(f"{folder.name}/coordinates.csv"))
        space = table.get("space", "MNI")
        coords.append(pd.DataFrame({"study_id": sid, "analysis_id": f"{sid}-1", "x": table["x"], "y": table["y"],
                                    "z": table["z"], "space_in": space}))
    raw.studies = pd.DataFrame(studies, columns=["study_id", "pmid", "title", "abstract", "body"])
    frame = pd.concat(coords, ignore_index=True) if coords else pd.DataFrame(
        columns=["study_id", "analysis_id", "x", "y", "z", "space_in"])
    raw.coordinates = to_mni(frame)
    return raw
