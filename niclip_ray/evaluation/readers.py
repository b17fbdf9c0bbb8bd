"""Read and check the evaluator's two inputs: ranked predictions and ground-truth labels.

Predictions follow the decode contract (``decode/part-NNNNN.parquet``): one row per map,
level and ranked term, with at least ``map_id, level, rank, term`` and optionally
``error`` (a non-null error marks a row the decoder could not compute) and ``backend``.

Ground truth is a CSV in one of two layouts:

long
    ``map_id, level, term``: one row per true label (``level`` is task, concept or
    domain).
wide
    ``map_id`` plus any of the columns ``task, concept, domain``, each holding the map's
    true labels separated by ``|`` (an empty cell means no label at that level).

``process`` is accepted as a synonym of ``domain`` (the reference's name for it).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from niclip_ray.decoding.schema import LEVELS, RANKING_COLUMNS
from niclip_ray.errors import InputError
from niclip_ray.tables import part_files

_LEVEL_ALIASES = {"process": "domain"}


def _normalise_level(values: pd.Series) -> pd.Series:
    levels = values.astype(str).str.strip().str.lower().replace(_LEVEL_ALIASES)
    return levels


def _prediction_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for directory in (path / "decode", path):
        files = part_files(directory)
        if files:
            return files
    raise InputError(f"no predictions in {path}: expected part-*.parquet files in it or in {path / 'decode'}")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"map_id": str, "term": str})
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt or non-Parquet files
        raise InputError(f"cannot read predictions file {path}: {exc}") from exc


def load_predictions(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Load ranked predictions and check them.

    Parameters
    ----------
    source : path or DataFrame
        A decode stage directory (``DIR/decode/part-*.parquet`` or ``DIR/part-*.parquet``),
        a single Parquet or CSV file, or a DataFrame with the decode columns.

    Returns
    -------
    DataFrame
        Columns ``map_id`` (str), ``level`` (task/concept/domain), ``rank`` (float64),
        ``term`` (str), ``error`` (str or None), plus any other input columns, sorted by
        map, level and rank.

    Raises
    ------
    InputError
        Missing columns, unknown levels, missing or non-numeric ranks of valid rows, or a
        term listed twice for the same map and level.
    """
    if isinstance(source, pd.DataFrame):
        frame, name = source.copy(), "predictions"
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"predictions not found: {path}")
        frame = pd.concat([_read_table(f) for f in _prediction_files(path)], ignore_index=True)
        name = str(path)
    missing = [c for c in RANKING_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {', '.join(missing)}; needs {', '.join(RANKING_COLUMNS)}")
    if "error" not in frame.columns:
        frame["error"] = None
    frame["error"] = frame["error"].where(frame["error"].notna() & (frame["error"].astype(str) != ""), None)
    frame["map_id"] = frame["map_id"].astype(str)
    frame["level"] = _normalise_level(frame["level"])
    frame["term"] = frame["term"].astype(object).where(frame["term"].notna(), None)
    ok = frame["error"].isna()
    bad_levels = sorted(set(frame.loc[ok, "level"]) - set(LEVELS))
    if bad_levels:
        raise InputError(f"{name}: unknown level(s) {bad_levels}; expected {list(LEVELS)}")
    frame["rank"] = pd.to_numeric(frame["rank"], errors="coerce").astype("float64")
    broken = ok & (frame["rank"].isna() | frame["term"].isna())
    if broken.any():
        row = frame.loc[broken].iloc[0]
        raise InputError(
            f"{name}: {int(broken.sum())} row(s) without error have no numeric rank or no term "
            f"(first: map {row['map_id']}, level {row['level']})"
        )
    keys = ["backend", "map_id", "level", "term"] if "backend" in frame.columns else ["map_id", "level", "term"]
    duplicated = ok & frame.duplicated(keys, keep=False)
    if duplicated.any():
        row = frame.loc[duplicated].iloc[0]
        raise InputError(
            f"{name}: term {row['term']!r} is listed twice for map {row['map_id']} at level {row['level']}"
        )
    return frame.sort_values(["map_id", "level", "rank"], kind="stable").reset_index(drop=True)


def load_truth(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Load ground-truth labels in the long or wide layout (see the module docstring).

    Parameters
    ----------
    source : path or DataFrame
        A CSV file or a DataFrame.

    Returns
    -------
    DataFrame
        Long layout, columns ``map_id, level, term`` (str), one row per distinct label,
        sorted.

    Raises
    ------
    InputError
        Missing file, neither layout's columns, unknown levels, or no labels at all.
    """
    if isinstance(source, pd.DataFrame):
        frame, name = source.copy(), "truth"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"truth mapping not found: {path}")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read truth mapping {path}: {exc}") from exc
        name = str(path)
    columns = {c: c.strip().lower() for c in frame.columns}
    frame = frame.rename(columns=columns).rename(columns=_LEVEL_ALIASES)
    if "map_id" not in frame.columns:
        raise InputError(f"{name} has no map_id column (columns: {', '.join(map(str, frame.columns))})")
    if {"level", "term"} <= set(frame.columns):
        long = frame[["map_id", "level", "term"]].astype(str)
        long["level"] = _normalise_level(long["level"])
    else:
        wide = [level for level in LEVELS if level in frame.columns]
        if not wide:
            raise InputError(
                f"{name} needs columns 'map_id, level, term' (one row per label) or 'map_id' plus "
                f"any of {', '.join(LEVELS)} ('|'-separated labels)"
            )
        melted = frame[["map_id", *wide]].astype(str).melt(id_vars="map_id", var_name="level", value_name="term")
        melted["term"] = melted["term"].str.split("|")
        long = melted.explode("term")
    long["map_id"] = long["map_id"].astype(str).str.strip()
    long["term"] = long["term"].astype(str).str.strip()
    long = long[(long["term"] != "") & (long["term"].str.lower() != "nan") & (long["map_id"] != "")]
    bad_levels = sorted(set(long["level"]) - set(LEVELS))
    if bad_levels:
        raise InputError(f"{name}: unknown level(s) {bad_levels}; expected {list(LEVELS)}")
    if long.empty:
        raise InputError(f"{name} holds no true labels")
    long = long.drop_duplicates().sort_values(["map_id", "level", "term"])
    return long.reset_index(drop=True)[["map_id", "level", "term"]]
