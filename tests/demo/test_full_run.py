"""The real-scale run on an 800-study subsample of Neurosynth + NeuroQuery (needs $NICLIP_REAL_DATA).

``--quick`` (2,000 studies, 3 folds of 5 epochs, two text sections) cut further to 800
training studies, 2 folds of 3 epochs and the title section, to keep the suite's time: every
stage still runs on real data, and the held-out set is the same 320 studies.
"""

import shutil

import pandas as pd
import pytest

from niclip_ray.cli.main import run
from niclip_ray.corpus import load_corpus
from niclip_ray.evaluation.heldout import heldout_matches
from niclip_ray.features.local_models import packaged_model_path

pytestmark = pytest.mark.skipif(packaged_model_path("all-minilm-l6-v2") is None, reason="packaged MiniLM not installed")


@pytest.fixture
def data_dir(real_data, tmp_path):
    """A writable copy of the NiMARE folder (its fetchers write) beside the read-only Cognitive Atlas."""
    data = tmp_path / "data"
    shutil.copytree(real_data / "nimare", data / "nimare")
    (data / "cognitive_atlas").symlink_to(real_data / "cognitive_atlas")
    return data


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_full_run_on_a_subsample(ray_local, data_dir, tmp_path, capsys):
    out = tmp_path / "full"
    argv = ["demo", "--full", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--permutations", "100",
            "--max-studies", "800", "--folds", "2", "--epochs", "3", "--sections", "title"]
    assert run(argv) == 0
    printed = capsys.readouterr().out

    # no training study is a held-out study, by any key; the whole corpus did hold some
    held_out = load_corpus(out / "heldout" / "corpus").studies
    assert len(held_out) == 320
    assert heldout_matches(load_corpus(out / "corpus").studies, held_out).empty
    excluded = pd.read_csv(out / "corpus" / "exclusions.csv", dtype=str)
    everything = load_corpus(out / "corpus-all").studies
    assert set(heldout_matches(everything, held_out)["study_id"]) == set(excluded["study_id"])
    assert excluded["study_id"].nunique() > 150
    assert len(load_corpus(out / "corpus").studies) == 800

    for section in ("title",):
        for vocabulary in ("full", "reduced"):
            key = f"{section}-{vocabulary}"
            headline = pd.read_csv(out / "evaluation" / key / "headline.csv")
            assert set(headline["backend"]) == {"niclip", "neurosynth", "gclda"}, key
            assert set(headline["label"]) == {"n-back", "flanker", "motor"}, key
            per_label = pd.read_csv(out / "evaluation" / key / "per_label.csv")
            nback = per_label[(per_label["backend"] == "niclip") & (per_label["label"] == "n-back")]
            assert nback.loc[nback["level"] == "task", "n_maps"].iloc[0] == 205
            assert {"hit@1", "hit@5", "hit@10", "median_best_rank", "mrr"} <= set(nback["statistic"])
            assert per_label["p_value"].dropna().between(0, 1).all()
        assert (out / "evaluation" / section / "retrieval_image_to_text.csv").is_file()
    assert not (out / "train" / "title+keywords").exists()  # only the sections asked for
    truth = pd.read_csv(out / "evaluation" / "title-full" / "truth.csv")
    labels = held_out.set_index("study_id")["label"]
    first = {label: f"study-{labels[labels == label].index[0]}" for label in ("n-back", "flanker")}
    tasks = {label: set(truth[(truth["map_id"] == m) & (truth["level"] == "task")]["term"]) for label, m in first.items()}
    assert len(tasks["n-back"]) == 8 and all("back" in name.lower() for name in tasks["n-back"])
    assert tasks["flanker"] == {"Eriksen flanker task"}

    page = (out / "report" / "report.html").read_text()
    assert page.index("Held-out maps, text section") < page.index("Metrics: NiCLIP") < page.index("Retrieval: held-out map")
    assert "Wall time per stage" in page
    assert "Held-out maps (title-full): task level" in printed

    assert run(argv) == 0  # a rerun reuses every finished stage
    rerun = capsys.readouterr().out
    assert "corpus: reusing" in rerun and "train (title): reusing" in rerun
