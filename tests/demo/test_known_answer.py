"""Known-answer check on the main job: held-out n-back maps rank the n-back task above the
flanker task, and flanker maps the reverse, above chance by a label-permutation test.

This runs the full demo (320 real studies, about 7 minutes on 2 CPUs). It is marked as an
expected failure because the measured result does not pass; the assertions are the issue's,
not tuned to the result. Only a failed assertion is expected: the full demo crashing is a
failure. If it starts passing, pytest reports XPASS.
"""

import pytest

from niclip_ray.demo import DemoSettings, run_demo
from niclip_ray.features.catalog import packaged_model_path


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(packaged_model_path("smollm2-135m") is None, reason="packaged SmolLM2 not installed")
@pytest.mark.xfail(
    raises=AssertionError,
    strict=False,
    reason="measured 2026-11-25 on the full demo: NiCLIP ranks a map's own task above the other label's "
    "in 0.578 of 64 held-out maps against 0.588 under the null (p = 0.70); n-back maps 0.80, flanker "
    "maps 0.17: the n-back task sits higher in most maps of both kinds. Neither baseline passes either.",
)
def test_nback_and_flanker_maps_rank_their_own_task_first(ray_local, tmp_path):
    result = run_demo(DemoSettings(out_dir=tmp_path / "demo"), say=lambda line: None)
    niclip = result.known_answer[result.known_answer["backend"] == "niclip"].set_index("kind")
    assert niclip.loc["n-back", "observed"] > 0.5 and niclip.loc["flanker", "observed"] > 0.5
    assert niclip.loc["all", "observed"] > niclip.loc["all", "null_mean"]
    assert niclip.loc["all", "p_value"] <= 0.05
