"""rank_by and the against-map and hub flags, on four tasks with chosen likelihoods and priors.

Tasks A, B, C, D with likelihoods (0.4, 0.3, 0.2, 0.1) (scale 1 and cosines ln(likelihood),
so the softmax returns them unchanged) and priors (0.05, 0.45, 0.05, 0.45), by hand:

- joint = (0.02, 0.135, 0.01, 0.045), sum 0.21, posterior = (2/21, 9/14, 1/21, 3/14);
- Bayes factor = odds(posterior) / odds(prior):
  A (2/19)/(1/19) = 2, B (9/5)/(9/11) = 11/5, C (1/20)/(1/19) = 19/20, D (3/11)/(9/11) = 1/3.

So posterior ranks B, D, A, C; Bayes factor B, A, C, D; likelihood A, B, C, D. C and D are
against the map (likelihood below the prior-weighted mean 0.21, Bayes factor below 1).
"""

import numpy as np
import pandas as pd
import pytest

from niclip_ray._testing import toy_state_dict
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.posterior import task_posterior, top_k
from niclip_ray.decoding.ranking import HUB_MIN_MAPS, against_map, hub_terms, parse_rank_by, task_scores
from niclip_ray.errors import ParameterError
from niclip_ray.model.bundle import Bundle
from niclip_ray.model.vocabulary import make_vocabulary

NAMES = ["A", "B", "C", "D"]
LIKELIHOOD = np.array([0.4, 0.3, 0.2, 0.1])
PRIOR = np.array([0.05, 0.45, 0.05, 0.45])
POSTERIOR = np.array([2 / 21, 9 / 14, 1 / 21, 3 / 14])
BAYES_FACTOR = np.array([2.0, 11 / 5, 19 / 20, 1 / 3])
ORDER = {"posterior": ["B", "D", "A", "C"], "bayes_factor": ["B", "A", "C", "D"], "likelihood": ["A", "B", "C", "D"]}
AGAINST = {"A": False, "B": False, "C": True, "D": True}


def test_hand_computed_posterior_and_bayes_factor():
    post = task_posterior(np.log(LIKELIHOOD)[None, :], PRIOR, 1.0)
    np.testing.assert_allclose(post.likelihood[0], LIKELIHOOD, rtol=1e-12)
    np.testing.assert_allclose(post.posterior[0], POSTERIOR, rtol=1e-12)
    np.testing.assert_allclose(post.bayes_factor[0], BAYES_FACTOR, rtol=1e-12)


@pytest.mark.parametrize("rank_by", sorted(ORDER))
def test_order_under_each_rank_by(rank_by):
    post = task_posterior(np.log(LIKELIHOOD)[None, :], PRIOR, 1.0)
    order = top_k(task_scores(post, rank_by), None)[0]
    assert [NAMES[i] for i in order] == ORDER[rank_by]


def test_against_map_is_a_bayes_factor_below_one():
    assert against_map(BAYES_FACTOR).tolist() == [AGAINST[n] for n in NAMES]
    assert against_map(np.array([1.0, np.inf, np.nan])).tolist() == [False, False, None]


@pytest.mark.parametrize("value, name", [("posterior", "posterior"), ("bayes-factor", "bayes_factor"),
                                         ("Bayes_Factor", "bayes_factor"), ("likelihood", "likelihood")])
def test_parse_rank_by(value, name):
    assert parse_rank_by(value) == name


def test_parse_rank_by_refuses_other_scores():
    with pytest.raises(ParameterError, match=r"^rank_by must be one of posterior, bayes-factor, likelihood, got 'prior'$"):
        parse_rank_by("prior")


def test_hubs_need_enough_maps_and_more_than_half_of_them():
    # 5 maps over 7 terms; a hub is in the top 5 of at least 3 of them (more than half); term 4 is in 2.
    order = np.array([
        [0, 1, 2, 3, 5, 4, 6],
        [0, 1, 2, 5, 6, 3, 4],
        [0, 5, 4, 6, 1, 2, 3],
        [6, 0, 1, 2, 3, 4, 5],
        [0, 1, 2, 3, 4, 5, 6],
    ])
    counts = {0: 5, 1: 5, 2: 4, 3: 3, 4: 2, 5: 3, 6: 3}  # appearances in the first five columns, by hand
    expected = [counts[t] > 2.5 for t in range(7)]
    assert hub_terms(order).tolist() == expected
    assert hub_terms(order[: HUB_MIN_MAPS - 1]) is None


@pytest.fixture()
def hand_decoder(monkeypatch):
    """A 4-task decoder whose cosines are its input: identity text features, image features = the coefficients."""
    dim = 64
    emb = np.eye(4, 32, dtype=np.float32)
    vocabulary = make_vocabulary(NAMES, {"names": emb, "definitions": emb, "combined": emb}, PRIOR)
    bundle = Bundle(toy_state_dict(32, dim), {"logit_scale": 1.0}, vocabulary)
    decoder = Decoder(bundle, topk=2, hierarchical=False)
    decoder.text_features = np.eye(4, dim, dtype=np.float32)
    monkeypatch.setattr(decoder, "image_features", lambda betas: betas)
    return decoder


def _betas(n: int) -> np.ndarray:
    betas = np.zeros((n, 64), np.float32)
    betas[:, :4] = np.log(LIKELIHOOD)
    return betas


@pytest.mark.parametrize("rank_by", sorted(ORDER))
def test_decoder_keeps_the_top_k_of_its_rank_by(hand_decoder, rank_by):
    frame = hand_decoder.decode_features(_betas(1), ["m"], rank_by=rank_by)
    assert frame["term"].tolist() == ORDER[rank_by][:2]
    assert frame["rank"].tolist() == [1, 2]
    assert frame["against_map"].tolist() == [AGAINST[t] for t in ORDER[rank_by][:2]]
    np.testing.assert_allclose(frame["prob"], [POSTERIOR[NAMES.index(t)] for t in ORDER[rank_by][:2]], rtol=1e-6)
    assert frame["hub"].isna().all()  # one map: hubs cannot be told


def test_decoder_rank_by_is_a_parameter(hand_decoder):
    decoder = Decoder(hand_decoder.bundle, topk=2, hierarchical=False, rank_by="bayes-factor")
    assert decoder.rank_by == "bayes_factor"
    assert decoder.get_params()["rank_by"] == "bayes_factor"
    with pytest.raises(ParameterError, match="^rank_by "):
        Decoder(hand_decoder.bundle, rank_by="odds")


def test_identical_maps_make_their_top_tasks_hubs(hand_decoder):
    hand_decoder.topk = None
    frame = hand_decoder.decode_features(_betas(HUB_MIN_MAPS), [f"m{i}" for i in range(HUB_MIN_MAPS)],
                                         rank_by="likelihood")
    # four tasks: every task is in each map's top 5, so every task tops all the maps
    assert frame["hub"].tolist() == [True] * (4 * HUB_MIN_MAPS)
    unflagged = hand_decoder.decode_features(_betas(HUB_MIN_MAPS), [f"m{i}" for i in range(HUB_MIN_MAPS)],
                                             flag_hubs=False)
    assert pd.isna(unflagged["hub"]).all()
