"""Per-item progress of a sharded stage, counted where the items are processed.

A stage's process function calls :func:`items_done` as it finishes items (a study
embedded, a map decoded). :func:`counting_items` directs those counts to a *sink* while
one shard runs: on Ray, :func:`file_sink`, which appends one byte per item to the stage's
tally file (``O_APPEND``: concurrent actors never overwrite one another), followed by the
driver with :func:`follow_tally`; in process, the caller's callback itself. What a shard
did not count (a stage that never calls :func:`items_done`, a shard that failed) is
counted when the shard ends, so the count always reaches the number of items.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from niclip_ray.polling import polling

log = logging.getLogger(__name__)

#: The stage directory's tally file (a leading underscore keeps Parquet readers off it).
TALLY_NAME = "_progress.tally"
Sink = Callable[[int], None]


class _ShardCount:
    """Items counted for the shard being processed, never more than it holds."""

    def __init__(self, sink: Sink, n_items: int):
        self.sink, self.n_items, self.counted = sink, n_items, 0

    def add(self, n: int) -> None:
        n = min(int(n), self.n_items - self.counted)
        if n > 0:
            self.counted += n
            self.sink(n)


_current: contextvars.ContextVar[_ShardCount | None] = contextvars.ContextVar("niclip_shard_count", default=None)


def items_done(n: int = 1) -> None:
    """Count ``n`` finished items of the shard being processed (does nothing outside a shard)."""
    count = _current.get()
    if count is not None:
        count.add(n)


@contextmanager
def counting_items(sink: Sink | None, n_items: int) -> Iterator[None]:
    """Send :func:`items_done` counts to ``sink`` while a shard of ``n_items`` runs; count the rest at its end."""
    if sink is None:
        yield
        return
    count = _ShardCount(sink, n_items)
    token = _current.set(count)
    try:
        yield
    finally:
        _current.reset(token)
        count.add(n_items - count.counted)


def file_sink(path: str | Path) -> Sink:
    """A sink appending one byte per item to ``path``; a failed write is logged, never raised."""

    def add(n: int) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"." * n)
            finally:
                os.close(fd)
        except OSError as exc:  # progress display only
            log.debug("cannot count items in %s: %s", path, exc)

    return add


@contextmanager
def follow_tally(path: Path, on_items: Sink, poll_s: float = 0.5) -> Iterator[None]:
    """Call ``on_items(n)`` with the items appended to the tally ``path`` since the last look.

    The tally is removed before (a killed run's leftover) and after the block.
    """
    path.unlink(missing_ok=True)
    seen = 0

    def poll() -> None:
        nonlocal seen
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size > seen:
            on_items(size - seen)
            seen = size

    try:
        with polling(poll, poll_s, "item-progress"):
            yield
    finally:
        path.unlink(missing_ok=True)
