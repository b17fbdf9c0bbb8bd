"""Training progress on the driver, read from the epoch rows Ray Train's rank 0 appends to files.

Ray Train workers log to files, not the console (see :mod:`niclip_ray.runtime.session`), so
the driver follows ``runs/fold-K/metrics.jsonl`` instead and advances a progress display.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from niclip_ray.polling import polling


def _epoch_note(row: dict) -> str:
    recall = row.get("val_recall@10")
    shown = f", val recall@10 {recall:.3f}" if isinstance(recall, (int, float)) else ""
    return f" (fold {row.get('fold')}, val loss {row.get('val_loss', float('nan')):.4f}{shown})"


@contextmanager
def follow_epochs(runs_dir: Path, progress, poll_s: float = 1.0) -> Iterator[None]:
    """Advance ``progress`` by one per epoch row rank 0 appends to ``runs_dir/*/metrics.jsonl``.

    The driver reads the files, so training progress shows although the Ray Train workers'
    own output goes to the log files, not the console.
    """
    seen: dict[Path, int] = {}

    def poll() -> None:
        for path in sorted(Path(runs_dir).glob("*/metrics.jsonl")):
            for line in path.read_text(errors="replace").splitlines()[seen.get(path, 0):]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a row being written: read it next time
                    break
                seen[path] = seen.get(path, 0) + 1
                progress.advance(1, _epoch_note(row))

    with polling(poll, poll_s, "epoch-progress"):
        yield
