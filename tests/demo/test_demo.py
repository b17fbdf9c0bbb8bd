"""The main job, run once as the README runs it: every stage's output, the report, the metric
table, decode-path consistency, the known-answer check, a quiet console, reuse.

The run is ``niclip-ray demo --out demo`` through the installed CLI, in a subprocess with a
private HOME (a new user's ``~/.ray``) and a relative ``--out`` (Ray Train workers run in
another working directory): 320 real studies, 4-7 minutes on 2 CPUs. With SmolLM2-135M the
known-answer check does not pass (a documented negative result, README);
``benchmarks/known_answer_by_model.py`` measures that on demand rather than in every CI run.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from niclip_ray.atlas.cache import atlas_cache_root
from niclip_ray.atlas.difumo import default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.corpus.ingest import read_source
from niclip_ray.corpus.schema import validate
from niclip_ray.corpus.subset import subset_studies
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.features.local_models import packaged_model_path
from niclip_ray.tables import read_parts, tensor_to_numpy

pytestmark = pytest.mark.skipif(packaged_model_path("all-minilm-l6-v2") is None, reason="packaged MiniLM not installed")


def test_subset_is_balanced_and_keeps_peaks():
    corpus = validate(read_source("nimare:nback_vs_flanker"))
    small = subset_studies(corpus, 40, seed=0)
    assert small.studies["label"].value_counts().to_dict() == {"n-back": 20, "flanker": 20}
    assert set(small.coordinates["study_id"]) == set(small.studies["study_id"])
    assert subset_studies(corpus, 40, seed=0).studies.equals(small.studies)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``niclip-ray demo --out demo`` in a fresh directory: (output dir, the completed process)."""
    home = tmp_path_factory.mktemp("demo-home")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["HOME"] = str(home)  # a private ~/.ray/auth_token, as a new user gets
    env["NICLIP_ATLAS_CACHE"] = str(atlas_cache_root())  # the stand-in atlas this process reads too
    argv = [sys.executable, "-c", "from niclip_ray.cli.main import main; main()", "demo", "--out", "demo"]
    done = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return home / "demo", done


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_console_shows_progress_and_no_ray_noise(demo):
    out, done = demo
    printed = done.stdout + done.stderr
    noise = re.compile(r"core_worker|Token authentication|Progress bars disabled|\(raylet\)|pid=\d+\)|\x1b\[")
    assert not [line for line in printed.splitlines() if noise.search(line)], printed[-3000:]
    assert re.search(r"^train: \d+/250 epochs \(at most\) \(fold \d", done.stdout, re.M)  # progress per epoch
    assert "features: 640/640 studies x (image, text)" in done.stdout
    assert (out / "logs" / "ray").is_dir() and f"Ray logs: {out.resolve() / 'logs'}" in done.stdout
    assert f"report: {(out / 'report' / 'report.html').resolve()}" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_stage_writes_its_outputs_and_the_report_explains_them(demo):
    out, _ = demo
    for path in ("corpus/studies.parquet", "features/images/part-00000.parquet", "features/text/part-00000.parquet",
                 "train/bundle/manifest.json", "vocabulary.parquet", "decode/part-00000.parquet",
                 "baselines/decode/part-00000.parquet", "evaluation/known_answer.csv", "index/part-00000.parquet",
                 "evaluation/retrieval_image_to_text.csv", "evaluation/retrieval_paired_tests.csv"):
        assert (out / path).is_file(), path
    held_out = len(list((out / "maps" / "heldout").glob("study-*.nii.gz")))
    assert held_out == 64  # 320 studies, 5 folds: the selected fold's test studies

    summary = pd.read_csv(next((out / "evaluation").glob("eval-*_results.csv")))
    niclip = summary[summary["backend"] == "niclip"].set_index("level")
    assert set(niclip.index) == {"task", "concept", "domain"}
    assert niclip[["mean_hit_at_k", "mean_recall_at_k", "mrr"]].notna().all().all()
    assert set(summary["backend"]) == {"niclip", "neurosynth", "gclda"}
    assert (niclip["n_images"] == held_out + 1).all()  # the held-out studies and the motor map

    page = (out / "report" / "report.html").read_text()
    assert "Known-answer check" in page and "motor-neurovault-10426" in page
    assert f"Retrieval: held-out map -&gt; its own abstract among {held_out} held-out studies" in page
    paired = pd.read_csv(out / "evaluation" / "retrieval_paired_tests.csv")
    assert set(paired["baseline"]) == {"mean_training_map", "nearest_text_study"}
    assert 'src="http' not in page and "data:image/png;base64," in page
    assert f"The metrics score {held_out + 1} maps ({held_out} held-out studies" in page  # the counts explained
    assert 'href="https://neurostore.org/api/studies/' in page and "<script>" in page
    assert "Glass brain" in page and "the 95th percentile of |value|" in page  # binary study maps, signed motor map


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_held_out_maps_rank_their_own_task_first(demo):
    """n-back maps rank the n-back task above the flanker task, flanker maps the reverse, above chance."""
    known = pd.read_csv(demo[0] / "evaluation" / "known_answer.csv")
    niclip = known[known["backend"] == "niclip"].set_index("kind")
    assert niclip.loc["n-back", "observed"] > 0.5 and niclip.loc["flanker", "observed"] > 0.5
    assert niclip.loc["all", "observed"] > niclip.loc["all", "null_mean"]
    assert niclip.loc["all", "p_value"] <= 0.05


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_decode_path_gives_a_study_its_training_coefficients(demo):
    """File -> resample -> project gives a held-out study exactly its training feature row (sparse MKDA -> project)."""
    out, _ = demo
    features = read_parts(out / "features" / "images")
    rows = dict(zip(features["study_id"].to_pylist(), tensor_to_numpy(features["embedding"])))
    decoder = Decoder(out / "train" / "bundle", atlas_dir=default_standin_dir(0))
    for path in sorted((out / "maps" / "heldout").glob("study-*.nii.gz"))[:3]:
        study = path.name.removeprefix("study-").removesuffix(".nii.gz")
        np.testing.assert_allclose(decoder.project(path), rows[study], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_rerun_reuses_every_finished_stage(demo, ray_local, monkeypatch, capsys):
    out, _ = demo
    monkeypatch.chdir(out.parent)
    assert run(["demo", "--out", "demo"]) == 0
    rerun = capsys.readouterr().out
    for stage in ("corpus: reusing", "train: reusing", "baselines: reusing", "(1 already done)"):
        assert stage in rerun
