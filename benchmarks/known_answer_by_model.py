"""The demo's known-answer check with another text model (a measured result, not a CI test).

Runs the whole demo (320 real n-back/flanker studies, 5-7 minutes on 2 CPUs) with the
packaged text model given and prints NiCLIP's and the baselines' known-answer rows: the
share of held-out maps that rank their own task above the other label's, against the
label-permutation null. The default model's run is a test (``tests/demo/test_demo.py``);
SmolLM2-135M's is a documented negative result (README: 0.578 against 0.588 under the null,
p = 0.70, measured 2026-11-25 and 2026-12-01), re-measured here on demand instead of in
every CI run.

Usage: python benchmarks/known_answer_by_model.py [--model smollm2-135m] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from niclip_ray.demo import DemoSettings, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, help="demo directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "demo"
        result = run_demo(DemoSettings(out_dir=out, model=args.model), say=lambda line: None)
    rows = result.known_answer[result.known_answer["kind"] == "all"]
    print(f"known answer with {args.model} (own task above the other label's, {int(rows['n_maps'].max())} maps)")
    print(rows[["backend", "observed", "null_mean", "p_value"]].to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
