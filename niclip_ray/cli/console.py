"""Console output: rich on a terminal, plain lines otherwise (no ANSI codes); errors go to stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
#: Decoded maps printed as tables; more are only written to files.
SHOW_MAPS = 3


def say(message: str, *, quiet: bool = False) -> None:
    """Print an informational line unless ``--quiet``."""
    if not quiet:
        out.print(message)


def shard_progress(unit: str, *, quiet: bool = False):
    """A stage's ``on_shard`` callback that prints one line per finished shard."""

    def progress(result: dict) -> None:
        if not result["error"]:
            say(f"shard {result['shard_id']}: {result['n_rows']} {unit}, {result['n_failed']} failed", quiet=quiet)

    return progress


class ItemProgress:
    """Progress of one stage counted in items (studies, maps, epochs).

    On a terminal a rich bar; otherwise (output redirected, CI) one plain line per update,
    e.g. ``decode: 12/40 maps``. Use as a context manager and call :meth:`advance`.
    """

    def __init__(self, label: str, total: int, unit: str, *, quiet: bool = False, console: Console | None = None):
        self.label, self.total, self.unit, self.quiet = label, int(total), unit, quiet
        self.console = console or out
        self.done = 0
        self._bar = None

    def __enter__(self) -> ItemProgress:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(TextColumn(f"{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(self.unit), TimeElapsedColumn(), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more finished items; ``note`` is added to a plain line."""
        self.done = min(self.done + int(n), self.total) if self.total else self.done + int(n)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        else:
            self.console.print(f"{self.label}: {self.done}/{self.total} {self.unit}{note}", markup=False,
                               highlight=False)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def shard_items(result: dict, sizes: list[int]) -> int:
    """Items of the finished shard ``result`` (an ``on_shard`` result), from the shard sizes."""
    shard_id = int(result["shard_id"])
    return sizes[shard_id] if shard_id < len(sizes) else 0


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


def report_stage(summary, *, quiet: bool = False) -> None:
    """Print a stage summary; raise :class:`StageFailed` when shards failed (work is kept).

    Parameters
    ----------
    summary : niclip_ray.pipelines.shards.StageSummary
    quiet : bool
        Print the summary line only when something failed.
    """
    from niclip_ray.errors import StageFailed

    for shard_id, message in sorted(summary.failed_shards.items()):
        err.print(f"warning: shard {shard_id} failed: {message}", markup=False)
    if summary.failed_shards:
        raise StageFailed(f"{summary.line()}; rerun the same command to retry them")
    say(summary.line(), quiet=quiet)


def print_map(map_id: str, rows, n: int = 5) -> None:
    """Print a map's top ``n`` tasks, concepts and domains from its decode rows."""
    table = Table(title=f"{map_id}: top predictions")
    for column in ("level", "rank", "term", "prob", "bayes_factor"):
        table.add_column(column, justify="right" if column in ("rank", "prob", "bayes_factor") else "left")
    for level in ("task", "concept", "domain"):
        for row in rows[(rows["level"] == level) & (rows["rank"] <= n)].sort_values("rank").itertuples():
            bf = "" if row.bayes_factor != row.bayes_factor else f"{row.bayes_factor:.2f}"
            table.add_row(level, str(int(row.rank)), str(row.term), f"{row.prob:.3f}", bf)
    out.print(table)
