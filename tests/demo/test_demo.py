"""The main job in reduced mode: every stage's output, the report, the metric table, decode-path
consistency, reuse."""

import numpy as np
import pandas as pd
import pytest

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


@pytest.mark.timeout(1200)
def test_quick_demo_end_to_end_and_rerun(ray_local, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as `make demo` gives: Ray Train workers run elsewhere
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--out", "demo", "--folds", "2", "--epochs", "2", "--permutations", "50"]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert f"report: {report.resolve()}" in printed

    for path in ("corpus/studies.parquet", "features/images/part-00000.parquet", "features/text/part-00000.parquet",
                 "train/bundle/manifest.json", "vocabulary.parquet", "decode/part-00000.parquet",
                 "baselines/decode/part-00000.parquet", "evaluation/known_answer.csv", "index/part-00000.parquet",
                 "evaluation/retrieval_image_to_text.csv", "evaluation/retrieval_paired_tests.csv"):
        assert (out / path).is_file(), path
    assert len(list((out / "maps" / "heldout").glob("study-*.nii.gz"))) == 30  # 60 studies, 2 folds

    summary = pd.read_csv(next((out / "evaluation").glob("eval-*_results.csv")))
    niclip = summary[summary["backend"] == "niclip"].set_index("level")
    assert set(niclip.index) == {"task", "concept", "domain"}
    assert niclip[["mean_hit_at_k", "mean_recall_at_k", "mrr"]].notna().all().all()
    assert set(summary["backend"]) == {"niclip", "neurosynth", "gclda"}
    assert (niclip["n_images"] == 31).all()  # 30 held-out studies and the motor map

    page = report.read_text()
    assert "Known-answer check" in page and "motor-neurovault-10426" in page
    assert "Retrieval: held-out map -&gt; its own abstract among 30 held-out studies" in page
    paired = pd.read_csv(out / "evaluation" / "retrieval_paired_tests.csv")
    assert set(paired["baseline"]) == {"mean_training_map", "nearest_text_study"}
    assert 'src="http' not in page and "data:image/png;base64," in page
    assert "The metrics score 31 maps (30 held-out studies" in page  # the counts explained
    assert "the known-answer check scores 30 and the retrieval tables 30" in page
    assert 'href="https://neurostore.org/api/studies/' in page and "<script>" in page
    assert "Glass brain" in page and "the 95th percentile of |value|" in page  # binary study maps, signed motor map

    # the decode path (file -> resample -> project) gives a held-out study exactly the
    # coefficients its training feature row has (sparse MKDA -> project)
    features = read_parts(out / "features" / "images")
    rows = dict(zip(features["study_id"].to_pylist(), tensor_to_numpy(features["embedding"])))
    decoder = Decoder(out / "train" / "bundle", atlas_dir=default_standin_dir(0))
    for path in sorted((out / "maps" / "heldout").glob("study-*.nii.gz"))[:3]:
        study = path.name.removeprefix("study-").removesuffix(".nii.gz")
        np.testing.assert_allclose(decoder.project(path), rows[study], rtol=0, atol=1e-5)

    assert run(argv) == 0  # a rerun reuses every finished stage
    rerun = capsys.readouterr().out
    for stage in ("corpus: reusing", "train: reusing", "baselines: reusing", "(1 already done)"):
        assert stage in rerun


@pytest.mark.timeout(1500)
def test_quick_demo_console_has_no_ray_noise(tmp_path):
    """A successful run through the installed CLI prints no Ray noise; Ray's logs are kept under OUT/logs."""
    import os
    import re
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["HOME"] = str(tmp_path)  # a private ~/.ray/auth_token, as a new user gets
    argv = [sys.executable, "-c", "from niclip_ray.cli.main import main; main()", "demo", "--quick", "--out",
            str(tmp_path / "demo"), "--folds", "2", "--epochs", "2", "--permutations", "50"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1400)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]
    noise = re.compile(r"core_worker|Token authentication|Progress bars disabled|\(raylet\)|pid=\d+\)|\x1b\[")
    assert not [line for line in printed.splitlines() if noise.search(line)], printed[-3000:]
    assert re.search(r"^train: \d+/4 epochs \(at most\) \(fold \d", done.stdout, re.M)  # progress per epoch
    assert "features: 120/120 studies x (image, text)" in done.stdout
    assert (tmp_path / "demo" / "logs" / "ray").is_dir() and f"Ray logs: {tmp_path / 'demo' / 'logs'}" in done.stdout
