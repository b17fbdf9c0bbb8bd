"""Both NiMARE baselines on a tiny split of the real n-back/flanker corpus.

Each score is checked against NiMARE recomputed by hand: the Pearson correlation with an
MKDAChi2 map fitted directly, and the GC-LDA decoding formula on the model's matrices.
"""

import io
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_to_img
from nilearn.maskers import NiftiMasker
from tqdm import tqdm

from niclip_ray.baselines import GCLDABaseline, NeurosynthBaseline
from niclip_ray.baselines.base import template_mask
from niclip_ray.baselines.dataset import build_dataset, load_split
from niclip_ray.cli.options import user_message
from niclip_ray.decoding.schema import BASELINE_COLUMNS as PREDICTION_COLUMNS
from niclip_ray.errors import InputError
from niclip_ray.evaluation import evaluate

VOCABULARY = ["n-back", "flanker", "working memory", "theory of mind"]  # the last is never mentioned


@pytest.fixture(scope="module")
def setup(nback_flanker, tiny_split, tmp_path_factory):
    """Corpus, a 20-study training split, and maps: two held-out studies, the motor map, a broken file."""
    root = tmp_path_factory.mktemp("baselines")
    corpus = nback_flanker[1]
    train, held_out = tiny_split

    from nimare.meta.kernel import MKDAKernel

    split = load_split(corpus, held_out)
    dataset = build_dataset(split, pd.DataFrame(index=held_out), "none")
    images = dict(zip(dataset.ids, MKDAKernel().transform(dataset, return_type="image")))
    maps = {"nback_map": images[f"{held_out[0]}-1"], "flanker_map": images[f"{held_out[1]}-1"],
            "motor": load_sample_motor_activation_image()}
    broken = root / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    maps["broken"] = broken
    truth = pd.DataFrame({"map_id": ["nback_map", "flanker_map"], "task": ["n-back|working memory", "flanker"]})
    return {"corpus": corpus, "train": train, "maps": maps, "truth": truth}


@pytest.fixture(scope="module")
def neurosynth(setup):
    return NeurosynthBaseline().fit(setup["corpus"], setup["train"], VOCABULARY)


@pytest.fixture(scope="module")
def gclda(setup):
    return GCLDABaseline(n_topics=3, n_regions=2, n_iters=5, loglikely_freq=5, seed=2).fit(
        setup["corpus"], setup["train"], VOCABULARY
    )


def _check_format(predictions, backend):
    assert list(predictions.columns) == PREDICTION_COLUMNS
    ok = predictions[predictions["error"].isna()]
    assert set(ok["map_id"]) == {"nback_map", "flanker_map", "motor"}
    for _, rows in ok.groupby("map_id"):
        assert sorted(rows["term"]) == sorted(VOCABULARY)
        assert rows["rank"].tolist() == [1, 2, 3, 4]
        assert rows.iloc[-1]["term"] == "theory of mind" and np.isnan(rows.iloc[-1]["score"])
    assert (ok["level"] == "task").all() and (predictions["backend"] == backend).all()
    failed = predictions[predictions["error"].notna()]
    assert failed["map_id"].tolist() == ["broken"] and "broken" in failed["error"].iloc[0]


def _masked(img):
    """The map's values in the template mask, resampled with nilearn directly."""
    mask = template_mask()
    img = resample_to_img(nib.load(img) if isinstance(img, str) else img, mask, interpolation="continuous",
                          copy_header=True, force_resample=True)
    return np.nan_to_num(NiftiMasker(mask).fit().transform(img).ravel())


def test_neurosynth_scores_are_correlations_with_mkda_chi2_maps(setup, neurosynth):
    from nimare.meta.cbma.mkda import MKDAChi2

    assert sorted(neurosynth.terms_) == ["flanker", "n-back", "working memory"]
    predictions = neurosynth.decode(setup["maps"])
    _check_format(predictions, "neurosynth")

    # oracle: studies whose abstract mentions "flanker" vs the rest, MKDAChi2 fitted directly
    split = load_split(setup["corpus"], setup["train"])
    mentions = split.studies["abstract"].str.contains(r"\bflanker\b", flags=re.IGNORECASE, regex=True)
    dataset = build_dataset(split, pd.DataFrame(index=split.studies.index), "none")
    with_term = [f"{sid}-1" for sid in split.studies.index[mentions]]
    without = [f"{sid}-1" for sid in split.studies.index[~mentions]]
    result = MKDAChi2().fit(dataset.slice(with_term), dataset.slice(without))
    term_map = result.get_map("z_desc-association", return_type="array")
    for map_id in ("flanker_map", "motor"):
        expected = np.corrcoef(_masked(setup["maps"][map_id]), term_map)[0, 1]
        row = predictions.query("map_id == @map_id and term == 'flanker'").iloc[0]
        assert row["score"] == pytest.approx(expected, rel=1e-4)
    # NiMARE's own CorrelationDecoder.transform: tests/baselines/test_association.py


def test_gclda_scores_follow_the_decoding_formula(setup, gclda):
    assert sorted(gclda.terms_) == ["flanker", "n-back", "working memory"]
    predictions = gclda.decode(setup["maps"])
    _check_format(predictions, "gclda")
    model = gclda.model_
    values = _masked(setup["maps"]["motor"])
    weights = model.p_word_g_topic_ @ (model.p_topic_g_voxel_.T @ values)
    expected = pd.Series(weights, index=model.vocabulary).sort_values(ascending=False)
    motor = predictions[predictions["map_id"] == "motor"].iloc[:3]
    assert motor["term"].tolist() == expected.index.tolist()
    np.testing.assert_allclose(motor["score"], expected.to_numpy(), rtol=1e-4)
    # the same seed and data give the same model
    again = GCLDABaseline(n_topics=3, n_regions=2, n_iters=5, loglikely_freq=5, seed=2)
    again.fit(setup["corpus"], setup["train"], VOCABULARY)
    motor_map = {"motor": setup["maps"]["motor"]}
    pd.testing.assert_frame_equal(again.decode(motor_map), gclda.decode(motor_map))


def test_the_evaluator_scores_both_baselines(setup, neurosynth, gclda):
    predictions = pd.concat([neurosynth.decode(setup["maps"]), gclda.decode(setup["maps"])], ignore_index=True)
    result = evaluate(predictions, setup["truth"], k={"task": 1}, n_permutations=20)
    summary = result.summary.set_index("backend")
    assert sorted(summary.index) == ["gclda", "neurosynth"]
    assert (summary["n_images"] == 2).all() and summary["mean_hit_at_k"].between(0, 1).all()


def test_bad_fit_inputs(setup):
    with pytest.raises(InputError, match="not in the corpus"):
        NeurosynthBaseline().fit(setup["corpus"], ["no-such-study"], VOCABULARY)
    with pytest.raises(InputError, match="no vocabulary term occurs"):
        NeurosynthBaseline().fit(setup["corpus"], setup["train"], ["theory of mind"])
    with pytest.raises(InputError, match="unknown text section"):
        NeurosynthBaseline(section="methods").fit(setup["corpus"], setup["train"], VOCABULARY)
    with pytest.raises(InputError, match="n_topics") as caught:
        GCLDABaseline(n_topics=50).fit(setup["corpus"], setup["train"], VOCABULARY)
    assert user_message(caught.value).startswith("--gclda-topics of the gclda baseline must be between 1 and")


def test_fits_print_no_progress_bars(setup, capfd):
    """NiMARE's tqdm bars (the correlation decoder's, one step per term) stay off the console."""
    NeurosynthBaseline().fit(setup["corpus"], setup["train"], VOCABULARY)
    GCLDABaseline(n_topics=2, n_regions=2, n_iters=2, loglikely_freq=2).fit(setup["corpus"], setup["train"],
                                                                            VOCABULARY).decode(setup["maps"])
    printed = "".join(capfd.readouterr())
    assert "it/s" not in printed and "%|" not in printed
    assert not tqdm(range(1), file=io.StringIO()).disable  # bars are back on after the fits
