"""Per-item progress of sharded stages: counted inside the shard, on Ray and in process."""

import time

import pyarrow as pa
import pytest

from niclip_ray.pipelines.shards import run_shard, run_stage
from niclip_ray.pipelines.tally import TALLY_NAME, counting_items, file_sink, follow_tally, items_done

ITEMS = [{"id": f"s{i:02d}", "v": float(i)} for i in range(8)]


def counted(per_item: bool, pause_s: float = 0.0, fail: bool = False):
    """Process factory: one row per item, counting each item when ``per_item``."""

    def process(items):
        for _ in items:
            time.sleep(pause_s)
            if per_item:
                items_done()
        if fail:
            raise RuntimeError("shard failed")
        return pa.table({"id": [i["id"] for i in items], "error": [""] * len(items)})

    return process


def test_items_are_counted_one_by_one_and_never_beyond_the_shard():
    counts: list[int] = []
    with counting_items(counts.append, 3):
        for _ in range(5):
            items_done()
    assert counts == [1, 1, 1]
    items_done()  # outside a shard: nobody listens
    assert counts == [1, 1, 1]


@pytest.mark.parametrize("per_item, fail", [(False, False), (True, True)])
def test_a_shard_counts_what_it_did_not_when_it_ends(tmp_path, per_item, fail):
    counts: list[int] = []
    result = run_shard(counted(per_item, fail=fail), 0, ITEMS[:4], tmp_path, counts.append)
    assert bool(result["error"]) == fail
    assert sum(counts) == 4 and len(counts) == (4 if per_item else 1)


def test_file_tally_is_followed_and_removed(tmp_path):
    path = tmp_path / TALLY_NAME
    path.write_bytes(b"..")  # a killed run's leftover is not counted
    seen: list[int] = []
    with follow_tally(path, seen.append, poll_s=0.02):
        sink = file_sink(path)
        sink(2)
        time.sleep(0.2)
        sink(3)
    assert seen == [2, 3] and not path.exists()


def test_in_process_stage_reports_items_and_what_an_earlier_run_finished(tmp_path):
    calls: list[tuple[int, int]] = []
    run_stage("toy", ITEMS[:5], key="id", out_dir=tmp_path, factory=lambda: counted(True), params={},
              shard_size=2, in_process=True, on_items=lambda n, total: calls.append((n, total)))
    assert calls == [(1, 5)] * 5
    calls.clear()
    run_stage("toy", ITEMS, key="id", out_dir=tmp_path, factory=lambda: counted(False), params={},
              shard_size=2, in_process=True, on_items=lambda n, total: calls.append((n, total)))
    assert calls == [(4, 8), (2, 8), (2, 8)]  # shards 0-1 were done; 2 (now full) and 3 are new


@pytest.mark.timeout(180)
def test_stage_on_ray_shows_progress_inside_a_shard(ray_local, tmp_path):
    calls: list[int] = []
    summary = run_stage("toy", ITEMS, key="id", out_dir=tmp_path, factory=lambda: counted(True, pause_s=0.4),
                        params={}, shard_size=len(ITEMS), on_items=lambda n, total: calls.append(n))
    assert summary.n_rows == len(ITEMS) and sum(calls) == len(ITEMS)
    assert len(calls) >= 2  # one shard, seen in steps while it ran
    assert not (tmp_path / TALLY_NAME).exists()
