"""Per-item progress: what counting each study in the tally file costs the image stage.

The same shards of studies (NiMARE's shipped n-back/flanker studyset, repeated to reach
N) go through the image stage's process function (MKDA + projection) in this process,
three ways:

* reference: no progress (what the stage does when nobody asks for it);
* callback: every study counted to a callback in this process (the in-process path);
* tally: every study appended to the tally file, as an actor does on Ray.

Each way runs ``--repeats`` times, alternating, and the best time is kept. The figure is
the time ratio against the reference on the same inputs.

Usage: python benchmarks/bench_item_progress.py [--dim 64] [--n 2000] [--shard-size 256]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from niclip_ray.atlas.difumo import load_atlas
    from niclip_ray.corpus import ingest
    from niclip_ray.pipelines.images import make_process, study_items
    from niclip_ray.pipelines.tally import TALLY_NAME, counting_items, file_sink

    atlas = load_atlas(args.dim, allow_standin=True)
    process = make_process(atlas, 10.0, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        ingest("nimare:nback_vs_flanker", tmp)
        shipped = study_items(tmp)
        items = [{**shipped[i % len(shipped)], "study_id": f"s{i:06d}"} for i in range(args.n)]
        shards = [items[i : i + args.shard_size] for i in range(0, len(items), args.shard_size)]
        tally = Path(tmp) / TALLY_NAME
        process(shards[0][:5])  # warm-up

        def run(sink_for_shard) -> float:
            start = time.perf_counter()
            for shard in shards:
                with counting_items(sink_for_shard(), len(shard)):
                    process(shard)
            return time.perf_counter() - start

        ways = {
            "reference": lambda: None,
            "callback": lambda: (lambda n: None),
            "tally": functools.partial(file_sink, tally),
        }
        best = {name: float("inf") for name in ways}
        for _ in range(args.repeats):
            for name, sink_for_shard in ways.items():
                tally.unlink(missing_ok=True)
                best[name] = min(best[name], run(sink_for_shard))
        counted = tally.stat().st_size

    print(f"atlas {atlas.atlas_id}; {args.n} studies in shards of {args.shard_size}; best of {args.repeats}")
    print(f"{'progress':<10} {'seconds':>9} {'vs reference':>13}")
    for name, seconds in best.items():
        print(f"{name:<10} {seconds:>9.3f} {seconds / best['reference']:>12.3f}x")
    print(f"the tally counted {counted} of {args.n} studies")


if __name__ == "__main__":
    main()
