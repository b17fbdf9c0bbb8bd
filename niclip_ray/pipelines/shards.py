"""Deterministic, resumable sharded stages on Ray Data.

Every stage that turns many inputs into rows (image features, text features, decoding)
follows the same recipe (see ``notes/ray-2.60.md`` §1, "Making a run resumable"):

1. sort the manifest by its key and cut it into shards of ``shard_size`` items;
2. drop shards whose ``part-NNNNN.parquet`` already exists with a readable footer;
3. send one row per pending shard through ``map_batches`` on an actor pool whose actors
   do their heavy setup (atlas, language model) once;
4. each actor writes its shard under a temporary name and renames it, so a killed job
   leaves no partial file and a rerun never duplicates rows.

A shard whose processing raises is not written; it stays pending for the next run and is
reported in the :class:`StageSummary`. Row-level problems are the stage's business: its
process function returns them in the ``error`` column.

The stage-specific part is a *process factory*: a picklable zero-argument callable that
returns ``process(items: list[dict]) -> pyarrow.Table``. It runs inside the actor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from niclip_ray.errors import InputError, ParameterError
from niclip_ray.tables import is_complete_parquet, write_parquet_atomic

log = logging.getLogger(__name__)

ProcessFn = Callable[[list[dict]], pa.Table]
MANIFEST_NAME = "_stage.json"


def shard_path(out_dir: str | Path, shard_id: int) -> Path:
    """Path of shard ``shard_id`` in a stage directory."""
    return Path(out_dir) / f"part-{shard_id:05d}.parquet"


def plan_shards(items: Sequence[dict], key: str, shard_size: int) -> list[list[dict]]:
    """Sort ``items`` by ``key`` and cut them into consecutive shards.

    Raises
    ------
    InputError
        On duplicate keys, which would make shard contents ambiguous.
    """
    if shard_size < 1:
        raise ParameterError("shard_size", f"must be at least 1, got {shard_size}")
    ordered = sorted(items, key=lambda item: str(item[key]))
    keys = [str(item[key]) for item in ordered]
    dupes = sorted({k for k, nxt in zip(keys, keys[1:]) if k == nxt})
    if dupes:
        raise InputError(f"duplicate {key} in the manifest: {', '.join(dupes[:5])}")
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def fingerprint(shards: list[list[dict]], key: str, params: dict) -> str:
    """Hash of the shard layout and the stage parameters; a rerun must match it to resume."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for shard in shards:
        digest.update(("\x1f".join(str(item[key]) for item in shard) + "\x1e").encode())
    return digest.hexdigest()[:16]


def check_stage_dir(out_dir: Path, stage: str, print_: str, params: dict) -> None:
    """Record this run's fingerprint, or refuse to mix it with a different earlier run."""
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file():
        previous = json.loads(manifest.read_text())
        if previous.get("fingerprint") != print_:
            raise InputError(
                f"{out_dir} holds a {previous.get('stage', 'stage')} run with other inputs or "
                f"parameters ({previous.get('params')}); resume needs the same ones, or use a new --out"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps({"stage": stage, "fingerprint": print_, "params": params}, indent=2, default=str)
    )


def run_shard(process: ProcessFn, shard_id: int, items: list[dict], out_dir: str | Path) -> dict:
    """Process one shard and write it atomically; never raises.

    Returns
    -------
    dict
        ``shard_id``, ``n_rows``, ``n_failed`` (rows with a non-empty ``error``) and
        ``error`` (empty unless the whole shard failed and was not written).
    """
    try:
        table = process(items)
        if "error" not in table.column_names:
            raise ValueError("a stage's process function must return an 'error' column")
        n_failed = int(pc.sum(pc.not_equal(pc.fill_null(table["error"], ""), "")).as_py() or 0)
        write_parquet_atomic(table, shard_path(out_dir, shard_id))
        return {"shard_id": shard_id, "n_rows": table.num_rows, "n_failed": n_failed, "error": ""}
    except Exception as exc:  # the shard stays pending; the summary names it
        log.debug("shard %d failed:\n%s", shard_id, traceback.format_exc())
        return {"shard_id": shard_id, "n_rows": 0, "n_failed": 0, "error": f"{type(exc).__name__}: {exc}"}


def use_assigned_cpus() -> int:
    """Size this actor's thread pools to its CPU share, rounded up.

    Ray starts workers with ``OMP_NUM_THREADS=1`` when their share is fractional, so an
    actor holding 1.5 of 2 CPUs would run torch and BLAS on one thread. Returns the
    thread count set.
    """
    import sys

    import ray
    from threadpoolctl import threadpool_limits

    share = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    threads = max(1, math.ceil(share - 1e-6))
    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


class ShardWriter:
    """Ray Data callable class: builds the stage's process function once per actor."""

    def __init__(self, factory: Callable[[], ProcessFn], out_dir: str):
        self.process = factory()
        self.threads = use_assigned_cpus()
        self.out_dir = out_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [
            run_shard(self.process, int(sid), json.loads(payload), self.out_dir)
            for sid, payload in zip(batch["shard_id"], batch["items"])
        ]
        return {k: np.array([r[k] for r in results]) for k in ("shard_id", "n_rows", "n_failed", "error")}


@dataclass
class StageSummary:
    """What a stage run did: shards written now or earlier, rows ok/failed, failed shards."""

    stage: str
    out_dir: Path
    n_shards: int
    n_skipped: int
    n_rows: int = 0
    n_failed_rows: int = 0
    failed_shards: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_ok_rows(self) -> int:
        return self.n_rows - self.n_failed_rows

    def line(self) -> str:
        """A one-line human summary."""
        text = (
            f"{self.stage}: {self.n_ok_rows} ok, {self.n_failed_rows} failed rows in "
            f"{self.n_shards} shards ({self.n_skipped} already done) -> {self.out_dir} "
            f"[{self.seconds:.1f} s]"
        )
        if self.failed_shards:
            text += f"; {len(self.failed_shards)} shards failed and stay pending"
        return text


def count_rows(out_dir: Path) -> tuple[int, int]:
    """Rows and failed rows over all finished shards of a stage directory."""
    n_rows = n_failed = 0
    for path in sorted(out_dir.glob("part-*.parquet")):
        errors = pq.read_table(path, columns=["error"])["error"]
        n_rows += len(errors)
        n_failed += int(pc.sum(pc.not_equal(pc.fill_null(errors, ""), "")).as_py() or 0)
    return n_rows, n_failed


def run_stage(
    stage: str,
    items: Sequence[dict],
    *,
    key: str,
    out_dir: str | Path,
    factory: Callable[[], ProcessFn],
    params: dict,
    shard_size: int,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    on_shard: Callable[[dict], None] | None = None,
) -> StageSummary:
    """Run a sharded stage on the current Ray, skipping shards finished earlier.

    Parameters
    ----------
    stage : str
        Name used in messages and in the stage manifest.
    items : sequence of dict
        JSON-serialisable inputs, one per output row group (a study, a map, a text).
    key : str
        Item field that orders the manifest and must be unique.
    out_dir : path
        Stage directory receiving ``part-NNNNN.parquet`` files.
    factory : callable
        Picklable; returns the process function inside each actor.
    params : dict
        Stage parameters recorded in the manifest; a resume must use the same.
    shard_size : int
        Items per shard.
    num_actors, cpus_per_actor, gpus_per_actor
        Actor pool shape (default: one actor per ``cpus_per_actor`` CPUs of the cluster, at
        most one per pending shard); CPUs are shrunk so the pool never holds every CPU.
    on_shard : callable, optional
        Called with each shard's result as it completes (progress).
    """
    import ray
    import ray.data

    from niclip_ray.runtime.session import actor_pool_shape

    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()  # actors may run in another working directory
    shards = plan_shards(items, key, shard_size)
    check_stage_dir(out_dir, stage, fingerprint(shards, key, params), params)
    pending = [
        {"shard_id": i, "items": json.dumps(shard, default=_json_default)}
        for i, shard in enumerate(shards)
        if not is_complete_parquet(shard_path(out_dir, i))
    ]
    summary = StageSummary(stage, out_dir, n_shards=len(shards), n_skipped=len(shards) - len(pending))
    if pending:
        n_actors, cpus = actor_pool_shape(num_actors, cpus_per_actor, limit=len(pending))
        if gpus_per_actor:
            cpus = min(cpus, 1.0)
        ds = ray.data.from_items(pending).map_batches(
            ShardWriter,
            fn_constructor_kwargs={"factory": factory, "out_dir": str(out_dir)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus,
            num_gpus=gpus_per_actor,
        )
        for result in ds.iter_rows():
            result = {k: (v.item() if hasattr(v, "item") else v) for k, v in result.items()}
            if result["error"]:
                summary.failed_shards[int(result["shard_id"])] = str(result["error"])
            if on_shard is not None:
                on_shard(result)
    summary.n_rows, summary.n_failed_rows = count_rows(out_dir)
    summary.seconds = time.perf_counter() - started
    return summary


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} into a shard manifest")
