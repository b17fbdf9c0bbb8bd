"""Console output: rich on a terminal, plain lines otherwise (no ANSI codes); errors go to stderr."""

from __future__ import annotations

import math
import threading
import time

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from niclip_ray.controls import escape_controls

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
#: Decoded maps printed as tables; more get one summary line each (:func:`print_top_tasks`).
SHOW_MAPS = 3
#: Summary lines printed for many maps; the rest are counted.
SUMMARY_MAPS = 20
#: Seconds between plain progress lines of a stage when output is not a terminal.
PLAIN_EVERY_S = 5.0


def say(message: str, *, quiet: bool = False) -> None:
    """Print an informational line unless ``--quiet``."""
    if not quiet:
        out.print(message)


class ItemProgress:
    """Progress of one stage counted in items (studies, maps, epochs).

    On a terminal a rich bar; otherwise (output redirected, CI) plain lines such as
    ``decode: 12/40 maps``, at most one per ``every_s`` seconds besides the last. Use as a
    context manager; call :meth:`advance`, or pass :meth:`on_items` to a stage. Thread-safe:
    stages report from a following thread.
    """

    def __init__(self, label: str, total: int, unit: str, *, quiet: bool = False, console: Console | None = None,
                 every_s: float = 0.0):
        self.label, self.total, self.unit, self.quiet, self.every_s = label, int(total), unit, quiet, every_s
        self.console = console or out
        self.done = 0
        self._bar = None
        self._lock = threading.Lock()
        self._printed_at = -math.inf

    def __enter__(self) -> ItemProgress:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(TextColumn(f"{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(self.unit), TimeElapsedColumn(), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total or None)
        return self

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more finished items; ``note`` is added to a plain line."""
        with self._lock:
            self.done = min(self.done + int(n), self.total) if self.total else self.done + int(n)
            if self.quiet:
                return
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, total=self.total or None)
            elif self.done == self.total or time.monotonic() - self._printed_at >= self.every_s:
                self._printed_at = time.monotonic()
                self.console.print(f"{self.label}: {self.done}/{self.total} {self.unit}{note}", markup=False,
                                   highlight=False)

    def on_items(self, n: int, total: int) -> None:
        """A stage's ``on_items`` callback: ``n`` more of ``total`` items finished."""
        self.total = int(total)
        self.advance(n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


class ByteProgress:
    """Download progress in bytes: one rich bar per file on a terminal, plain lines otherwise.

    Plain lines read ``model.pth: 3.1 MB of 14.7 MB``, at most one per ``every_s`` seconds and
    one when a file is complete. Use as a context manager and pass the instance as an
    ``on_bytes(name, done, total)`` callback.
    """

    def __init__(self, *, quiet: bool = False, console: Console | None = None, every_s: float = PLAIN_EVERY_S):
        self.quiet, self.every_s, self.console = quiet, every_s, console or out
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._complete: set[str] = set()
        self._printed_at = -math.inf

    def __enter__(self) -> ByteProgress:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeElapsedColumn(), console=self.console)
            self._bar.start()
        return self

    def __call__(self, name: str, done: int, total: int) -> None:
        """``done`` of ``total`` bytes of file ``name`` have arrived."""
        if self.quiet or name in self._complete:
            return
        if self._bar is not None:
            if name not in self._tasks:
                self._tasks[name] = self._bar.add_task(name, total=total)
            self._bar.update(self._tasks[name], completed=done)
        elif done >= total or time.monotonic() - self._printed_at >= self.every_s:
            self._printed_at = time.monotonic()
            self.console.print(f"{name}: {filesize.decimal(done)} of {filesize.decimal(total)}", markup=False,
                               highlight=False)
        if done >= total:
            self._complete.add(name)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def report_failures(summary, where, unit: str) -> None:
    """Print the stage's failed items prominently (exit code unchanged)."""
    if summary.n_failed_items:
        err.print(f"FAILED: {summary.n_failed_items} of {summary.n_items} {unit} (error column of {where})",
                  style="bold red", markup=False)


def fail_if_any_failed(summary, unit: str) -> None:
    """Raise :class:`StageFailed` when any item failed (``--fail-on-error``), after all is written."""
    from niclip_ray.errors import StageFailed

    if summary.n_failed_items:
        raise StageFailed(f"{summary.n_failed_items} of {summary.n_items} {unit} failed (--fail-on-error)")


def check_shards(summary) -> None:
    """Print each failed shard and raise :class:`StageFailed` when any failed (work is kept)."""
    from niclip_ray.errors import StageFailed

    for shard_id, message in sorted(summary.failed_shards.items()):
        err.print(f"warning: shard {shard_id} failed: {message}", markup=False)
    if summary.failed_shards:
        raise StageFailed(f"{summary.line()}; rerun the same command to retry them")


def report_stage(summary, *, quiet: bool = False) -> None:
    """Print a stage summary; raise :class:`StageFailed` when shards failed (:func:`check_shards`).

    Parameters
    ----------
    summary : niclip_ray.pipelines.shards.StageSummary
    quiet : bool
        Print the summary line only when something failed.
    """
    check_shards(summary)
    say(summary.line(), quiet=quiet)


def print_map(map_id: str, rows, n: int = 5, rank_by: str = "posterior") -> None:
    """Print a map's top ``n`` tasks (in ``rank_by`` order), concepts and domains from its decode rows.

    ``prob`` is the posterior; ``flags`` names the row's ``against map`` and ``hub`` flags
    (:mod:`niclip_ray.decoding.ranking`).
    """
    table = Table(title=Text(f"{escape_controls(map_id)}: top predictions (tasks by {rank_by.replace('_', ' ')})"))
    numbers = ("rank", "prob", "prior", "bayes_factor")
    for column in ("level", "rank", "term", *numbers[1:], "flags"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for level in ("task", "concept", "domain"):
        for row in rows[(rows["level"] == level) & (rows["rank"] <= n)].sort_values("rank").itertuples():
            prior = "" if row.prior != row.prior else f"{row.prior:.3f}"
            bf = "" if row.bayes_factor != row.bayes_factor else f"{row.bayes_factor:.2f}"
            flags = ", ".join(name for name, value in (("against map", row.against_map), ("hub", row.hub))
                              if str(value) == "True")  # None, NaN or NA: not flagged
            table.add_row(level, str(int(row.rank)), str(row.term), f"{row.prob:.3f}", prior, bf, flags)
    out.print(table)


def print_maps(decoded, map_ids: list[str], n: int = 5, rank_by: str = "posterior", ontology=None) -> None:
    """Print each map's table (:func:`print_map`), then explain on stderr the flags shown and where levels disagree.

    Parameters
    ----------
    decoded : DataFrame
        Decode rows of maps without an error.
    map_ids : list of str
        The maps to print, in order.
    n, rank_by
        As :func:`print_map`.
    ontology : Ontology, optional
        The bundle's; with it, a map whose top concept is not one its top task measures gets
        a note (:func:`niclip_ray.decoding.ranking.level_disagreement`).
    """
    from niclip_ray.decoding.ranking import HUB_SHARE, HUB_TOP_K, level_disagreement

    shown = decoded[decoded["map_id"].isin(map_ids) & (decoded["rank"] <= n)]
    for map_id in map_ids:
        print_map(map_id, shown[shown["map_id"] == map_id], n=n, rank_by=rank_by)
    if (shown["against_map"].astype(str) == "True").any():
        err.print("note: 'against map': the map lowered the task's probability below its prior (Bayes factor "
                  "below 1); only its prior keeps it ranked (--rank-by bayes-factor ranks by the map's evidence)",
                  markup=False)
    if (shown["hub"].astype(str) == "True").any():
        err.print(f"note: 'hub': in the top {HUB_TOP_K} of more than {HUB_SHARE:.0%} of the maps decoded together; "
                  "it says little about any one of them", markup=False)
    for map_id in map_ids:
        note = level_disagreement(shown[shown["map_id"] == map_id], ontology)
        if note:
            err.print(f"note: map {escape_controls(map_id)}: {note}", markup=False)


def print_top_tasks(decoded, limit: int = SUMMARY_MAPS) -> None:
    """Print one line per decoded map, its top task and probability, for the first ``limit`` maps.

    Parameters
    ----------
    decoded : DataFrame
        Decode rows of maps without an error (``map_id``, ``level``, ``rank``, ``term``, ``prob``).
    limit : int
        Maps listed; ``... N more maps`` counts the others.
    """
    top = decoded[(decoded["level"] == "task") & (decoded["rank"] == 1)].sort_values("map_id")
    for row in top.head(limit).itertuples():
        out.print(f"{escape_controls(row.map_id)}: {escape_controls(str(row.term))} ({row.prob:.3f})", markup=False)
    if len(top) > limit:
        out.print(f"... {len(top) - limit} more maps (all in the decode/ parts and CSVs)", markup=False)
