"""Known-answer check on the main job: held-out n-back maps rank the n-back task above the
flanker task, and flanker maps the reverse, above chance by a label-permutation test.

Each test runs the full demo (320 real studies, 5-7 minutes on 2 CPUs) with one packaged
text model. The assertions are the issue's, the same for both models, not tuned to either
result. With SmolLM2-135M the check does not pass (measured figures in the xfail reason;
only a failed assertion is expected there, a crash of the demo is a failure); if it ever
passes, pytest reports XPASS.
"""

import pytest

from niclip_ray.demo import DemoSettings, run_demo
from niclip_ray.features.local_models import packaged_model_path


def assert_own_task_first(out_dir, model):
    result = run_demo(DemoSettings(out_dir=out_dir, model=model), say=lambda line: None)
    niclip = result.known_answer[result.known_answer["backend"] == "niclip"].set_index("kind")
    assert niclip.loc["n-back", "observed"] > 0.5 and niclip.loc["flanker", "observed"] > 0.5
    assert niclip.loc["all", "observed"] > niclip.loc["all", "null_mean"]
    assert niclip.loc["all", "p_value"] <= 0.05


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(packaged_model_path("all-minilm-l6-v2") is None, reason="packaged MiniLM not installed")
def test_maps_rank_their_own_task_first_with_the_default_model(ray_local, tmp_path):
    assert_own_task_first(tmp_path / "demo", DemoSettings.model)


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(packaged_model_path("smollm2-135m") is None, reason="packaged SmolLM2 not installed")
@pytest.mark.xfail(
    raises=AssertionError,
    strict=False,
    reason="measured 2026-11-25 and 2026-12-01 on the full demo with SmolLM2-135M: NiCLIP ranks a map's own "
    "task above the other label's in 0.578 of 64 held-out maps against 0.588 under the null (p = 0.70); "
    "n-back maps 0.80, flanker maps 0.17: the n-back task sits higher in most maps of both kinds.",
)
def test_maps_rank_their_own_task_first_with_smollm2(ray_local, tmp_path):
    assert_own_task_first(tmp_path / "demo", "smollm2-135m")
