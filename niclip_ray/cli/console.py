"""Console output: rich on a terminal, plain lines otherwise; errors go to stderr."""

from __future__ import annotations

from rich.console import Console
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
            table.add_row(level, str(row.rank), str(row.term), f"{row.prob:.3f}", bf)
    out.print(table)
