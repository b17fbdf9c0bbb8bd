"""Deterministic, resumable sharded stages on Ray Data.

Every stage that turns many inputs into rows (image features, text features, decoding)
follows the same recipe (``docs/runtime.md``, "Resumable stages", says why):

1. sort the manifest by its key and cut it into shards of ``shard_size`` items;
2. compare each shard's inputs (keys and contents: peaks, texts, file stamps) with those
   ``_stage.json`` records for it, delete the parts whose inputs changed, and skip shards
   whose ``part-NNNNN.parquet`` already exists with a readable footer; a run with other
   parameters is refused, naming them. ``_stage.lock`` keeps a second run out;
3. send one row per pending shard through ``map_batches`` on an actor pool whose actors
   do their heavy setup (atlas, language model) once;
4. each actor writes its shard under a temporary name and renames it, so a killed job
   leaves no partial file and a rerun never duplicates rows;
5. progress is counted per item, inside the shards (:mod:`niclip_ray.pipelines.tally`).

A shard whose processing raises is not written; it stays pending for the next run and is
reported in the :class:`StageSummary`. Row-level problems are the stage's business: its
process function returns them in the ``error`` column.

The stage-specific part is a *process factory*: a picklable zero-argument callable that
returns ``process(items: list[dict]) -> pyarrow.Table``. It runs inside the actor.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from niclip_ray._docs import fill_doc
from niclip_ray.atomic import make_dir, write_json
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.pipelines.tally import TALLY_NAME, Sink, counting_items, file_sink, follow_tally
from niclip_ray.tables import is_complete_parquet, write_parquet_atomic

log = logging.getLogger(__name__)

ProcessFn = Callable[[list[dict]], pa.Table]
MANIFEST_NAME = "_stage.json"
LOCK_NAME = "_stage.lock"
#: What a shard reports back to the driver (:func:`run_shard`); ``error`` is null for a written shard.
SHARD_RESULT_SCHEMA = pa.schema(
    [("shard_id", pa.int64()), ("n_rows", pa.int64()), ("n_failed", pa.int64()), ("error", pa.string()),
     ("node_id", pa.string())]
)


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


def item_digest(item: dict) -> str:
    """Hash of one manifest item's content (its peaks, its text, its file's stamp)."""
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def params_digest(params: dict) -> str:
    """Hash of the stage parameters; a rerun must match it to resume."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_digests(shards: list[list[dict]], key: str) -> tuple[list[str], dict[str, str]]:
    """Per-shard hashes of the items' keys and contents, and per-item hashes by key."""
    items = {str(item[key]): item_digest(item) for shard in shards for item in shard}
    digests = []
    for shard in shards:
        listing = "\x1e".join(f"{item[key]}\x1f{items[str(item[key])]}" for item in shard)
        digests.append(hashlib.sha256(listing.encode()).hexdigest()[:16])
    return digests, items


def read_manifest(out_dir: Path) -> dict | None:
    """The stage manifest of ``out_dir`` (None when there is none).

    Raises
    ------
    InputError
        When ``_stage.json`` is not a JSON object (damaged), saying how to recover.
    """
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return None
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        previous = exc
    if not isinstance(previous, dict) or not isinstance(previous.get("params", {}), dict):
        problem = previous if isinstance(previous, Exception) else "not a JSON object with params"
        raise InputError(
            f"{manifest} is damaged ({problem}); delete it and rerun to recompute every shard of {out_dir}, "
            "or use a new --out"
        )
    return previous


def differences(previous: dict, current: dict) -> str:
    """``name: was X, now Y`` for every parameter that differs between two runs."""
    names = sorted(set(previous) | set(current))
    return "; ".join(
        f"{name}: was {previous.get(name, '(unset)')!r}, now {current.get(name, '(unset)')!r}"
        for name in names
        if json.dumps(previous.get(name), default=str) != json.dumps(current.get(name), default=str)
    )


def check_stage_dir(
    out_dir: Path, stage: str, shards: list[list[dict]], key: str, params: dict
) -> dict[int, list[str]]:
    """Record this run in the stage manifest; drop the parts whose inputs changed since.

    A shard is kept only when the manifest records the same keys and contents for it. The
    stale parts are deleted before the new manifest is written, so a run killed in between
    never leaves a part that the manifest vouches for wrongly. A directory with parts but
    no manifest is recomputed whole: nothing says what its parts were made of.

    Returns
    -------
    dict
        Shard id -> keys of its changed (or new) items, for every finished part dropped.

    Raises
    ------
    InputError
        When the parameters differ from the earlier run's (naming each one that differs)
        or the manifest is damaged.
    """
    previous = read_manifest(out_dir)
    if previous is not None and params_digest(previous.get("params", {})) != params_digest(params):
        raise InputError(
            f"{out_dir} holds a {previous.get('stage', 'stage')} run with other parameters "
            f"({differences(previous.get('params', {}), params)}); resume needs the same ones, or use a new --out"
        )
    digests, items = shard_digests(shards, key)
    old_shards = (previous or {}).get("shards", [])
    old_items = (previous or {}).get("items", {})
    changed = {}
    for shard_id, shard in enumerate(shards):
        part = shard_path(out_dir, shard_id)
        if part.exists() and (shard_id >= len(old_shards) or old_shards[shard_id] != digests[shard_id]):
            keys = [str(i[key]) for i in shard if old_items.get(str(i[key])) != items[str(i[key])]]
            changed[shard_id] = keys or [str(i[key]) for i in shard]  # moved between shards
            part.unlink()
    for extra in out_dir.glob("part-*.parquet"):
        if int(extra.stem.split("-")[1]) >= len(shards):  # the input shrank: those rows are gone
            extra.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / MANIFEST_NAME,
        {"stage": stage, "params": params, "key": key, "shards": digests, "items": items},
        indent=2,
        default=str,
    )
    return changed


@contextmanager
def stage_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT/_stage.lock`` for a run; a second run into the same directory stops at once.

    The lock is an ``flock`` on the file, so the system releases it when its run dies
    (even by ``kill -9``); a leftover lock file is harmless.

    Raises
    ------
    InputError
        When another run holds the lock, naming its process.
    ParameterError
        When ``out_dir`` or a parent of it is a file.
    """
    make_dir(out_dir)
    path = out_dir / LOCK_NAME
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(
                f"{out_dir} is being written by another run ({holder}); wait for it to finish "
                "(a rerun then resumes), or use a new --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_shard(
    process: ProcessFn, shard_id: int, items: list[dict], out_dir: str | Path, sink: Sink | None = None
) -> dict:
    """Process one shard and write it atomically; never raises.

    ``sink`` receives the shard's item counts (:func:`~niclip_ray.pipelines.tally.counting_items`).

    Returns
    -------
    dict
        ``shard_id``, ``n_rows``, ``n_failed`` (rows with a non-empty ``error``) and
        ``error`` (None unless the whole shard failed and was not written).
    """
    with counting_items(sink, len(items)):
        try:
            table = process(items)
            if "error" not in table.column_names:
                raise ValueError("a stage's process function must return an 'error' column")
            n_failed = int(pc.sum(pc.not_equal(pc.fill_null(table["error"], ""), "")).as_py() or 0)
            write_parquet_atomic(table, shard_path(out_dir, shard_id))
            return {"shard_id": shard_id, "n_rows": table.num_rows, "n_failed": n_failed, "error": None}
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
    """Ray Data callable class: builds the stage's process function once per actor.

    With ``count_items`` it counts finished items in the stage's tally file for the driver.
    """

    def __init__(self, factory: Callable[[], ProcessFn], out_dir: str, count_items: bool = False):
        import ray

        self.process = factory()
        self.threads = use_assigned_cpus()
        self.out_dir = out_dir
        self.node_id = ray.get_runtime_context().get_node_id()
        self.sink = file_sink(Path(out_dir) / TALLY_NAME) if count_items else None

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        results = [
            {**run_shard(self.process, int(sid), json.loads(payload), self.out_dir, self.sink), "node_id": self.node_id}
            for sid, payload in zip(batch["shard_id"], batch["items"])
        ]
        return pa.Table.from_pylist(results, schema=SHARD_RESULT_SCHEMA)


@dataclass
class StageSummary:
    """What a stage run did: shards written now or earlier, rows and items ok/failed, failed shards.

    ``unit`` names the stage's items (``maps``) when one item may give several rows; the
    summary line then counts items. ``changed`` maps each shard recomputed because its
    inputs changed to the keys of the changed items. ``nodes`` counts the shards written
    now per Ray node id (``"driver"`` for a stage run in this process).
    """

    stage: str
    out_dir: Path
    n_shards: int
    n_skipped: int
    n_rows: int = 0
    n_failed_rows: int = 0
    failed_shards: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    unit: str = ""
    n_items: int = 0
    n_failed_items: int = 0
    changed: dict[int, list[str]] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)

    @property
    def n_ok_rows(self) -> int:
        return self.n_rows - self.n_failed_rows

    @property
    def n_ok_items(self) -> int:
        return self.n_items - self.n_failed_items

    def line(self) -> str:
        """A one-line human summary."""
        counts = (
            f"{self.n_ok_items} {self.unit} ok, {self.n_failed_items} failed"
            if self.unit
            else f"{self.n_ok_rows} ok, {self.n_failed_rows} failed rows"
        )
        text = (
            f"{self.stage}: {counts} in {self.n_shards} shards ({self.n_skipped} already done) -> {self.out_dir} "
            f"[{self.seconds:.1f} s]"
        )
        if self.changed:
            keys = sorted(k for keys in self.changed.values() for k in keys)
            more = f", ... {len(keys) - 5} more" if len(keys) > 5 else ""
            text += (
                f"; recomputed {len(self.changed)} shards whose inputs changed "
                f"({', '.join(keys[:5])}{more})"
            )
        if self.failed_shards:
            text += f"; {len(self.failed_shards)} shards failed and stay pending"
        if len(self.nodes) > 1:
            text += "; shards per node: " + ", ".join(f"{node[:8]} {n}" for node, n in sorted(self.nodes.items()))
        return text


def count_rows(out_dir: Path, key: str) -> tuple[int, int, int, int]:
    """Rows, failed rows, items and failed items (an item with an error row) over all finished shards."""
    n_rows = n_failed = 0
    items: set[str] = set()
    failed_items: set[str] = set()
    for path in sorted(out_dir.glob("part-*.parquet")):
        table = pq.read_table(path, columns=[key, "error"])
        failed = pc.not_equal(pc.fill_null(table["error"], ""), "")
        n_rows += table.num_rows
        n_failed += int(pc.sum(failed).as_py() or 0)
        keys = pc.cast(table[key], pa.string())
        items.update(keys.to_pylist())
        failed_items.update(pc.filter(keys, failed).to_pylist())
    return n_rows, n_failed, len(items), len(failed_items)


@fill_doc
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
    on_items: Callable[[int, int], None] | None = None,
    unit: str = "",
    output_key: str | None = None,
    in_process: bool = False,
) -> StageSummary:
    """Run a sharded stage on the current Ray (or in this process), skipping shards finished earlier.

    A shard whose inputs changed since its part was written (content, not only keys) is
    recomputed; the summary says which. The run holds ``OUT/_stage.lock``
    (:func:`stage_lock`): a second run into the same directory stops with an error.

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
    %(shard_size)s
    num_actors, cpus_per_actor, gpus_per_actor
        Actor pool shape (default: one actor per ``cpus_per_actor`` CPUs of the cluster, at
        most one per pending shard); CPUs are shrunk so the pool never holds every CPU.
    %(on_items)s
    unit : str, optional
        What one item is (``maps``), when an item may give several rows: the summary line
        then counts items.
    output_key : str, optional
        The part files' column holding an item's ``key`` (default: ``key`` itself).
    in_process : bool
        Run the pending shards one after the other in this process, without Ray (for a
        handful of items, where starting Ray costs more than the work). Same files, same
        resume and lock; the actor pool arguments are ignored.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()  # actors may run in another working directory
    shards = plan_shards(items, key, shard_size)
    with stage_lock(out_dir):
        changed = check_stage_dir(out_dir, stage, shards, key, params)
        for shard_id, keys in sorted(changed.items()):
            log.warning("%s: shard %d is recomputed: its inputs changed (%s)", stage, shard_id, ", ".join(keys[:5]))
        pending = [
            {"shard_id": i, "items": json.dumps(shard, default=_json_default)}
            for i, shard in enumerate(shards)
            if not is_complete_parquet(shard_path(out_dir, i))
        ]
        summary = StageSummary(
            stage, out_dir, n_shards=len(shards), n_skipped=len(shards) - len(pending), unit=unit, changed=changed
        )
        count = None if on_items is None else (lambda n: on_items(n, len(items)))
        done_earlier = len(items) - sum(len(shards[row["shard_id"]]) for row in pending)
        if count is not None and done_earlier:
            count(done_earlier)
        for result in _run_pending(pending, factory, out_dir, count, in_process,
                                   num_actors, cpus_per_actor, gpus_per_actor):
            if result["error"]:
                summary.failed_shards[int(result["shard_id"])] = str(result["error"])
            else:
                node = result.get("node_id") or "driver"
                summary.nodes[node] = summary.nodes.get(node, 0) + 1
    summary.n_rows, summary.n_failed_rows, summary.n_items, summary.n_failed_items = count_rows(out_dir, output_key or key)
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pending(
    pending: list[dict],
    factory: Callable[[], ProcessFn],
    out_dir: Path,
    count: Sink | None,
    in_process: bool,
    num_actors: int | None,
    cpus_per_actor: float,
    gpus_per_actor: float,
) -> Iterator[dict]:
    """Shard results of ``pending`` as they finish, here or on Ray; item counts go to ``count``."""
    if not pending:
        return
    if in_process:
        yield from _run_here(pending, factory, out_dir, count)
        return
    results = _run_on_ray(pending, factory, out_dir, num_actors, cpus_per_actor, gpus_per_actor,
                          count_items=count is not None)
    with follow_tally(out_dir / TALLY_NAME, count) if count is not None else nullcontext():
        yield from results


def _run_here(
    pending: list[dict], factory: Callable[[], ProcessFn], out_dir: Path, sink: Sink | None
) -> Iterator[dict]:
    """Shard results of ``pending``, processed in this process by one process function."""
    process = factory()
    for row in pending:
        yield run_shard(process, int(row["shard_id"]), json.loads(row["items"]), out_dir, sink)


def _run_on_ray(
    pending: list[dict],
    factory: Callable[[], ProcessFn],
    out_dir: Path,
    num_actors: int | None,
    cpus_per_actor: float,
    gpus_per_actor: float,
    count_items: bool,
) -> Iterator[dict]:
    """Shard results of ``pending``, processed by an actor pool on the current Ray, as they finish."""
    import ray.data

    from niclip_ray.runtime.session import actor_pool_shape
    from niclip_ray.runtime.storage import check_shared_dir

    check_shared_dir(out_dir, "the stage's output directory")
    n_actors, cpus = actor_pool_shape(num_actors, cpus_per_actor, limit=len(pending))
    if gpus_per_actor:
        cpus = min(cpus, 1.0)
    ds = ray.data.from_items(pending).map_batches(
        ShardWriter,
        fn_constructor_kwargs={"factory": factory, "out_dir": str(out_dir), "count_items": count_items},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_cpus=cpus,
        num_gpus=gpus_per_actor,
    )
    for result in ds.iter_rows():
        yield {k: (v.item() if hasattr(v, "item") else v) for k, v in result.items()}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} into a shard manifest")
