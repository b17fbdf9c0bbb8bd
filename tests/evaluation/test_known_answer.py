"""The two-label known-answer check against hand-computed cases."""

import numpy as np
import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.evaluation.known_answer import known_answer_test, own_term_first

TERMS = {"n-back": "n-back task", "flanker": "eriksen flanker task"}


def predictions(rows):
    """rows: map_id -> ordered task list."""
    return pd.DataFrame(
        [(m, "task", r + 1, t) for m, order in rows.items() for r, t in enumerate(order)],
        columns=["map_id", "level", "rank", "term"],
    )


def test_own_term_first_by_hand():
    preds = predictions({
        "a": ["n-back task", "stroop task", "eriksen flanker task"],
        "b": ["eriksen flanker task", "n-back task"],
        "c": ["stroop task", "eriksen flanker task"],  # n-back missing: infinite rank
    })
    per_map = own_term_first(preds, {"a": "n-back", "b": "n-back", "c": "flanker"}, TERMS)
    assert per_map["own_rank"].tolist() == [1.0, 2.0, 2.0]
    assert per_map["other_rank"].tolist() == [3.0, 1.0, np.inf]
    assert per_map["own_first"].tolist() == [True, False, True]


def test_perfect_and_useless_decoders():
    maps = {f"n{i}": "n-back" for i in range(10)} | {f"f{i}": "flanker" for i in range(10)}
    perfect = predictions({m: [TERMS[k], TERMS["flanker" if k == "n-back" else "n-back"]] for m, k in maps.items()})
    result = known_answer_test(own_term_first(perfect, maps, TERMS), n_permutations=500, seed=0).set_index("kind")
    assert result.loc["all", "observed"] == 1.0 and result.loc["all", "p_value"] < 0.01
    assert result.loc["n-back", "n_maps"] == 10
    assert result.loc["all", "null_mean"] == pytest.approx(0.5, abs=0.05)

    constant = predictions({m: ["n-back task", "eriksen flanker task"] for m in maps})
    result = known_answer_test(own_term_first(constant, maps, TERMS), n_permutations=500, seed=0).set_index("kind")
    assert result.loc["all", "observed"] == 0.5 and result.loc["all", "p_value"] > 0.5
    assert result.loc["n-back", "observed"] == 1.0 and result.loc["flanker", "observed"] == 0.0


def test_p_value_formula_and_seed():
    maps = {"n0": "n-back", "f0": "flanker"}
    preds = predictions({"n0": ["n-back task", "eriksen flanker task"], "f0": ["eriksen flanker task", "n-back task"]})
    per_map = own_term_first(preds, maps, TERMS)
    first = known_answer_test(per_map, n_permutations=99, seed=3)
    assert first.equals(known_answer_test(per_map, n_permutations=99, seed=3))
    # two maps: a permutation either keeps the labels (score 1) or swaps them (score 0)
    rng = np.random.default_rng(3)
    kept = sum(rng.permutation(np.array(["n-back", "flanker"]))[0] == "n-back" for _ in range(99))
    assert first.set_index("kind").loc["all", "p_value"] == pytest.approx((kept + 1) / 100)


def test_bad_labels():
    with pytest.raises(InputError, match="two kinds"):
        own_term_first(predictions({"a": ["x"]}), {"a": "n-back"}, {"n-back": "x"})
    with pytest.raises(InputError, match="label 'motor'"):
        own_term_first(predictions({"a": ["x"]}), {"a": "motor"}, TERMS)
    with pytest.raises(InputError, match="no maps"):
        known_answer_test(pd.DataFrame(columns=["map_id", "label", "own_rank", "other_rank", "own_first"]))
