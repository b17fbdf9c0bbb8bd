"""The generic sharded stage: deterministic shards, atomic writes, resume without duplicates."""

import functools
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from niclip_ray.errors import InputError
from niclip_ray.pipelines.shards import plan_shards, run_shard, run_stage, shard_path
from niclip_ray.tables import read_parts, tensor_array, tensor_to_numpy


def make_square(fail_on=None, shard_fail_on=None):
    """Process factory: squares values; negative values are row errors."""

    def process(items):
        if shard_fail_on is not None and any(i["id"] == shard_fail_on for i in items):
            raise RuntimeError(f"worker died on {shard_fail_on}")
        values = np.array([i["v"] for i in items], dtype=np.float32)
        ok = values >= 0
        return pa.table(
            {
                "id": [i["id"] for i in items],
                "embedding": tensor_array(np.stack([values, values**2], axis=1), valid=ok),
                "error": ["" if good else "negative value" for good in ok],
            }
        )

    return process


ITEMS = [{"id": f"s{i:02d}", "v": float(i if i % 4 else -i)} for i in range(10)]


def test_plan_shards_sorts_and_rejects_duplicates():
    shards = plan_shards(list(reversed(ITEMS)), "id", 4)
    assert [len(s) for s in shards] == [4, 4, 2]
    assert [i["id"] for i in shards[0]] == ["s00", "s01", "s02", "s03"]
    with pytest.raises(InputError, match="duplicate id"):
        plan_shards(ITEMS + ITEMS[:1], "id", 4)
    with pytest.raises(InputError, match="shard_size must be at least 1"):
        plan_shards(ITEMS, "id", 0)


def test_run_shard_keeps_failures_out_of_the_output(tmp_path):
    result = run_shard(make_square(shard_fail_on="s01"), 0, ITEMS[:3], tmp_path)
    assert result["error"].startswith("RuntimeError: worker died") and not shard_path(tmp_path, 0).exists()
    assert not list(tmp_path.iterdir())  # no temporary leftovers


def test_stage_resumes_without_duplicates(ray_local, tmp_path):
    out = tmp_path / "stage"
    failing = functools.partial(make_square, shard_fail_on="s05")
    first = run_stage("toy", ITEMS, key="id", out_dir=out, factory=failing, params={"p": 1}, shard_size=3)
    assert first.n_shards == 4 and set(first.failed_shards) == {1}
    assert first.nodes == {ray.get_runtime_context().get_node_id(): 3}  # the shards written, by the node that wrote them
    assert not shard_path(out, 1).exists()

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    second = run_stage("toy", ITEMS, key="id", out_dir=out, factory=make_square, params={"p": 1}, shard_size=3)
    assert second.n_skipped == 3 and not second.failed_shards and sum(second.nodes.values()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name in mtimes} == mtimes

    table = read_parts(out)
    assert table["id"].to_pylist() == [i["id"] for i in ITEMS]  # every row once, in order
    assert second.n_rows == 10 and second.n_failed_rows == 2  # s04 and s08 are negative
    vectors = tensor_to_numpy(table["embedding"])
    expected = np.array([[i["v"], i["v"] ** 2] for i in ITEMS], dtype=np.float32)
    ok = expected[:, 0] >= 0
    np.testing.assert_allclose(vectors[ok], expected[ok])
    assert np.isnan(vectors[~ok]).all()


def test_stage_refuses_to_mix_runs(ray_local, tmp_path):
    run_stage("toy", ITEMS[:2], key="id", out_dir=tmp_path, factory=make_square, params={"p": 1}, shard_size=5)
    with pytest.raises(InputError, match=r"other parameters \(p: was 1, now 2\)"):
        run_stage("toy", ITEMS[:2], key="id", out_dir=tmp_path, factory=make_square, params={"p": 2}, shard_size=5)


def test_truncated_part_file_is_recomputed(ray_local, tmp_path):
    run_stage("toy", ITEMS, key="id", out_dir=tmp_path, factory=make_square, params={}, shard_size=5)
    shard_path(tmp_path, 1).write_bytes(shard_path(tmp_path, 1).read_bytes()[:50])
    again = run_stage("toy", ITEMS, key="id", out_dir=tmp_path, factory=make_square, params={}, shard_size=5)
    assert again.n_skipped == 1 and again.n_rows == 10
    assert pq.read_table(shard_path(tmp_path, 1)).num_rows == 5


def make_thread_probe():
    """Process factory reporting the torch and BLAS thread counts inside the actor."""
    import torch
    from threadpoolctl import threadpool_info

    def process(items):
        blas = max((pool["num_threads"] for pool in threadpool_info()), default=1)
        return pa.table({"id": [i["id"] for i in items], "torch": [torch.get_num_threads()] * len(items),
                         "blas": [blas] * len(items), "error": [""] * len(items)})

    return process


def test_actor_threads_follow_its_cpu_share(ray_local, tmp_path):
    run_stage("probe", ITEMS[:2], key="id", out_dir=tmp_path, factory=make_thread_probe, params={},
              shard_size=2, num_actors=1, cpus_per_actor=1.5)
    table = read_parts(tmp_path)
    assert table["torch"].to_pylist() == [2, 2] and table["blas"].to_pylist() == [2, 2]


def make_pid_recorder():
    """Process factory: each row records the process (actor) that wrote it."""

    def process(items):
        return pa.table({"id": [i["id"] for i in items], "pid": [os.getpid()] * len(items),
                         "error": [""] * len(items)})

    return process


def test_stage_starts_one_actor_per_cpu_not_one_per_shard(ray_local, tmp_path):
    items = [{"id": f"m{i:03d}"} for i in range(24)]
    summary = run_stage("pids", items, key="id", out_dir=tmp_path / "pids", factory=make_pid_recorder,
                        params={}, shard_size=2)
    assert summary.n_shards == 12 and summary.n_ok_rows == 24
    assert len(set(read_parts(tmp_path / "pids")["pid"].to_pylist())) <= 2  # the fixture's 2 CPUs
