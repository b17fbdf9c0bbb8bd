"""Run a poll function in a background thread while a block runs, then once more at its end.

The driver follows what workers write to files (epoch rows, item tallies) this way: the
final poll after the block picks up what was written last, so nothing is missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def polling(poll: Callable[[], None], poll_s: float, name: str) -> Iterator[None]:
    """Call ``poll()`` every ``poll_s`` seconds in a daemon thread while the block runs.

    A poll that raises stops the thread (logged; the block goes on): progress display must
    never fail the work it shows. The final poll, after the block, runs in this thread.
    """
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(poll_s):
            try:
                poll()
            except Exception:  # display only: the work goes on without it
                log.warning("%s: stopped following progress", name, exc_info=True)
                return

    thread = threading.Thread(target=follow, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()
