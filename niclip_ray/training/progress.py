"""Training progress on the driver, read from the epoch rows Ray Train's rank 0 appends to files.

Ray Train workers log to files, not the console (see :mod:`niclip_ray.runtime.session`), so
the driver follows ``runs/fold-K/metrics.jsonl`` instead and advances a progress display,
and ``runs/fold-K/resumes.jsonl`` to say when a fold's workers went on from a checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from niclip_ray.polling import polling


def _epoch_note(row: dict) -> str:
    recall = row.get("val_recall@10")
    shown = f", val recall@10 {recall:.3f}" if isinstance(recall, (int, float)) else ""
    return f" (fold {row.get('fold')}, val loss {row.get('val_loss', float('nan')):.4f}{shown})"


def resume_line(row: dict) -> str:
    """What the driver says when a fold starts again from its checkpoint (a ``resumes.jsonl`` row)."""
    kept = row["epochs_kept"]
    return (f"fold {row['fold']}: went on from its checkpoint after epoch {row['last_epoch'] + 1} "
            f"({kept} epoch{'' if kept == 1 else 's'} kept, not rerun)")


@contextmanager
def follow_epochs(runs_dir: Path, progress, poll_s: float = 1.0,
                  on_resume: Callable[[str], None] | None = None) -> Iterator[None]:
    """Advance ``progress`` by one per epoch row rank 0 appends to ``runs_dir/*/metrics.jsonl``.

    The driver reads the files, so training progress shows although the Ray Train workers'
    own output goes to the log files, not the console. ``on_resume`` is called with
    :func:`resume_line` for each row appended to ``runs_dir/*/resumes.jsonl`` (workers
    restarted after a failure, or a rerun of the same run directory); rows already there
    when the block starts are an earlier run's and are not repeated.
    """
    seen: dict[Path, int] = {path: len(path.read_text(errors="replace").splitlines())
                             for path in Path(runs_dir).glob("*/resumes.jsonl")}

    def new_rows(path: Path) -> Iterator[dict]:
        for line in path.read_text(errors="replace").splitlines()[seen.get(path, 0):]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a row being written: read it next time
                return
            seen[path] = seen.get(path, 0) + 1
            yield row

    def poll() -> None:
        for path in sorted(Path(runs_dir).glob("*/metrics.jsonl")):
            for row in new_rows(path):
                progress.advance(1, _epoch_note(row))
        for path in sorted(Path(runs_dir).glob("*/resumes.jsonl")) if on_resume else ():
            for row in new_rows(path):
                on_resume(resume_line(row))

    with polling(poll, poll_s, "epoch-progress"):
        yield
