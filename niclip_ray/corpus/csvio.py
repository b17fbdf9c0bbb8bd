"""CSV reading that keeps the good rows and reports each bad one by file and line.

A row is bad when one of its lines is not UTF-8, when it has more fields than the header,
or when a quote opened in it does not close where it should. A stray quote swallows the
lines after it into one field (up to the next quote, or the end of the file); those lines
are read again as rows, so only the row with the stray quote is lost.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from niclip_ray.errors import InputError


@dataclass(frozen=True)
class BadRow:
    """A CSV record that was left out, and why.

    Parameters
    ----------
    first_line, last_line : int
        The lines (from 1) the record spans.
    key : str
        The record's value in the key column, ``""`` when it has none.
    problem : str
        Short label for the error table ("malformed CSV row", "unterminated quote", ...).
    reason : str
        What is wrong, in words.
    """

    first_line: int
    last_line: int
    key: str
    problem: str
    reason: str

    def detail(self, name: str) -> str:
        """``NAME line N: reason`` (or ``lines N-M``)."""
        lines = (f"line {self.first_line}" if self.first_line == self.last_line
                 else f"lines {self.first_line}-{self.last_line}")
        return f"{name} {lines}: {self.reason}"


def read_csv_tolerant(
    path: Path, required: list[str], key: str | None = None
) -> tuple[pd.DataFrame, list[BadRow]]:
    """Read a CSV, keeping its well-formed rows and reporting the others.

    Rows with fewer fields than the header are padded with empty strings.

    Parameters
    ----------
    path : Path
        The CSV file (UTF-8, header on the first line).
    required : list of str
        Columns the header must have.
    key : str, optional
        Column whose value names a bad row's record in :attr:`BadRow.key`.

    Returns
    -------
    frame : DataFrame
        The well-formed rows, all columns as strings.
    bad_rows : list of BadRow
        The rows left out, in file order.

    Raises
    ------
    InputError
        When the file is missing, unreadable, empty, its header is unreadable, or it lacks
        a required column.
    """
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    lines, undecodable = _decode_lines(data)
    header: list[str] | None = None
    rows: list[list[str]] = []
    bad: list[BadRow] = []
    with _unbounded_fields():
        for first, last, fields, closed in _records(lines):
            broken = [n for n in range(first, last + 1) if n in undecodable]
            if not fields and not broken:
                continue  # blank line
            if header is None:
                if broken or not closed:
                    reason = undecodable[broken[0]] if broken else "a quote opened here does not close"
                    raise InputError(f"{path} line {first}: cannot read the header ({reason})")
                header = fields
                missing = [c for c in required if c not in header]
                if missing:
                    raise InputError(f"{path} lacks column(s) {', '.join(missing)} (has {', '.join(header)})")
                continue
            key_value = fields[header.index(key)] if key in header and header.index(key) < len(fields) else ""
            if not closed:
                reason = undecodable.get(first, "a quote opened here does not close where it should; "
                                                "the lines after it were read again as rows")
                bad.append(BadRow(first, first, key_value, "unterminated quote", reason))
            elif broken:
                bad.append(BadRow(first, last, key_value, "text is not UTF-8", undecodable[broken[0]]))
            elif len(fields) > len(header):
                text = ",".join(fields)[:200]
                bad.append(BadRow(first, last, key_value, "malformed CSV row",
                                  f"{len(fields)} fields, the header has {len(header)}: {text}"))
            else:
                rows.append(fields + [""] * (len(header) - len(fields)))
    if header is None:
        raise InputError(f"{path} is empty (no header line)")
    return pd.DataFrame(rows, columns=header).astype(str), bad


def _decode_lines(data: bytes) -> tuple[list[str], dict[int, str]]:
    """The lines of ``data`` as text, and why each undecodable line (numbered from 1) failed.

    An undecodable line is decoded with replacement characters, so its record still parses
    (and is then left out). UTF-8 never uses a newline byte inside a character, so decoding
    line by line is exact.
    """
    lines, undecodable = [], {}
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            undecodable[number] = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            lines.append(raw.decode("utf-8", errors="replace"))
    return lines, undecodable


def _records(lines: list[str]) -> Iterator[tuple[int, int, list[str], bool]]:
    """CSV records as ``(first line, last line, fields, closed)``, lines numbered from 1.

    ``closed`` is False for a record spanning several lines (or ending the file) whose
    quotes the strict parser rejects: a stray quote made it swallow the lines after it.
    Reading then starts again on the line after the one where it began.
    """
    start = 0
    while start < len(lines):
        reader = csv.reader(lines[start:])
        previous, restart = start, None
        for fields in reader:
            first, last = previous + 1, start + reader.line_num
            if (last > first or last == len(lines)) and not _strictly_valid(lines[first - 1:last]):
                yield first, last, fields, False
                restart = first
                break
            yield first, last, fields, True
            previous = last
        if restart is None:
            return
        start = restart


def _strictly_valid(record_lines: list[str]) -> bool:
    """True when the strict parser reads these lines (every quoted field closes cleanly)."""
    try:
        for _ in csv.reader(record_lines, strict=True):
            pass
    except csv.Error:
        return False
    return True


@contextmanager
def _unbounded_fields() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit (full texts are longer) while reading."""
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(limit)
