"""CSV reading that keeps good rows and reports malformed ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from niclip_ray.errors import InputError


def read_csv_tolerant(path: Path, required: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV, skipping malformed lines instead of failing on them.

    Returns
    -------
    frame : DataFrame
        The well-formed rows, all columns as strings.
    bad_lines : list of str
        The malformed lines, as text, for the error report.

    Raises
    ------
    InputError
        When the file is missing, unreadable, or lacks a required column.
    """
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    bad: list[str] = []

    def keep_bad(fields: list[str]) -> None:
        bad.append(",".join(fields))
        return None

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, engine="python", on_bad_lines=keep_bad)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)} (has {', '.join(frame.columns)})")
    return frame, bad
