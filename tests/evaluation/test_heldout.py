"""The held-out evaluation: exclusion keys, truth from the ontology, per-label scores by hand."""

import numpy as np
import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.evaluation.heldout import (
    heldout_matches,
    hubness,
    label_table,
    label_tasks,
    label_terms,
    normalise_doi,
    normalise_title,
    term_in_top,
)
from niclip_ray.evaluation.known_answer import own_term_first
from niclip_ray.ontology import load_ontology


def ranked(rows):
    """rows: map_id -> level -> ordered term list, as decode-contract rows."""
    return pd.DataFrame(
        [(m, level, r + 1, t, None) for m, levels in rows.items() for level, order in levels.items()
         for r, t in enumerate(order)],
        columns=["map_id", "level", "rank", "term", "error"],
    )


def test_normalised_keys():
    assert normalise_title("  Neural  Correlates of the N-Back: Task.") == "neural correlates of the n back task"
    assert normalise_title("Décision émotionnelle") == normalise_title("decision emotionnelle")
    assert normalise_title(None) == "" and normalise_title(float("nan")) == ""
    assert normalise_doi("https://doi.org/10.1016/J.X.2001") == "10.1016/j.x.2001"
    assert normalise_doi("doi: 10.1/ABC") == normalise_doi("http://dx.doi.org/10.1/abc") == "10.1/abc"


def test_heldout_matches_each_key():
    corpus = pd.DataFrame({
        "study_id": ["1", "2", "3", "4", "5"],
        "pmid": ["1", "2", "3", "4", "5"],
        "doi": ["", "10.1/X", "", "", "10.9/other"],
        "title": ["Working memory. ", "Other", "An N-back study", "Unrelated", "Also unrelated"],
    })
    heldout = pd.DataFrame({
        "study_id": ["h1", "h2", "h3", "h4"],
        "pmid": ["1", "", "", "99"],
        "doi": ["", "https://doi.org/10.1/x", "", ""],
        "title": ["working memory", "something", "an n back study", ""],
    })
    found = heldout_matches(corpus, heldout)
    assert found.values.tolist() == [
        ["1", "h1", "pmid"], ["1", "h1", "title"], ["2", "h2", "doi"], ["3", "h3", "title"]]


def test_label_truth_from_the_ontology():
    ontology = load_ontology("builtin")
    tasks = label_tasks(ontology)
    assert tasks["n-back"] == ["n-back task"]
    assert tasks["flanker"] == ["eriksen flanker task"]  # names match case-insensitively
    assert set(tasks["motor"]) == {"finger tapping task", "motor fMRI task paradigm"}
    terms = label_terms(ontology, tasks)
    assert terms["n-back"]["concept"] == sorted(ontology.concepts_of("n-back task"))
    assert "working memory" in terms["n-back"]["concept"]
    with pytest.raises(InputError, match="no task for label 'x'"):
        label_tasks(ontology, {"x": {"names": ["not a task"]}})


def test_label_table_by_hand():
    # two n-back maps and two flanker maps, each ranking its own task first: observed hit@1 = 1.
    # Under the null a map gets the list of a random map; for the two n-back maps both lists
    # are n-back lists with probability 2/4 * 1/3, so p = (1000/6 + 1) / 1001 and the null mean is 1/2.
    own = {"n": ["nb", "fl"], "f": ["fl", "nb"]}
    preds = ranked({m: {"task": own[m[0]]} for m in ("n1", "n2", "f1", "f2")})
    truth = pd.DataFrame([(m, "task", "nb" if m[0] == "n" else "fl") for m in ("n1", "n2", "f1", "f2")],
                         columns=["map_id", "level", "term"])
    labels = {"n1": "n-back", "n2": "n-back", "f1": "flanker", "f2": "flanker"}
    table = label_table(preds, truth, labels, levels=["task"], ks=(1,), n_permutations=3000, seed=0)
    row = table.set_index(["label", "statistic"])
    assert row.loc[("n-back", "hit@1"), "observed"] == 1.0
    assert row.loc[("n-back", "hit@1"), "null_mean"] == pytest.approx(0.5, abs=0.03)
    assert row.loc[("n-back", "hit@1"), "p_value"] == pytest.approx(1 / 6, abs=0.03)
    assert row.loc[("flanker", "median_best_rank"), "observed"] == 1.0
    # the median best rank's null is 1 (both lists own), 1.5 or 2: p counts nulls at or below 1
    assert row.loc[("flanker", "median_best_rank"), "p_value"] == pytest.approx(1 / 6, abs=0.03)
    assert row.loc[("n-back", "mrr"), "null_mean"] == pytest.approx(0.75, abs=0.03)


def test_label_table_without_true_terms_says_so():
    preds = ranked({"m1": {"task": ["a", "b"]}, "m2": {"task": ["b", "a"]}})
    truth = pd.DataFrame([("m1", "task", "a")], columns=["map_id", "level", "term"])
    table = label_table(preds, truth, {"m1": "x", "m2": "y"}, levels=["task"], n_permutations=50)
    assert table.loc[table["label"] == "y", "statistic"].tolist() == ["no true term in the vocabulary"]


def test_term_in_top_and_hubness():
    preds = ranked({f"m{i}": {"concept": ["working memory", "c1", "c2"] if i < 3 else ["c1", "c2", "working memory"]}
                    for i in range(6)})
    found = term_in_top(preds, ["m0", "m1", "m2"], [f"m{i}" for i in range(6)], "working memory", "concept", 1,
                        n_permutations=2000, seed=1)
    assert found["observed"] == 1.0 and found["null_mean"] == pytest.approx(0.5, abs=0.03)
    hubs = hubness(preds, level="concept", k=2, top=3).set_index("term")
    assert hubs.loc["c1", "n_maps_in_top_k"] == 6 and hubs.loc["c1", "share"] == 1.0
    assert hubs.loc["c1", "chance_share"] == pytest.approx(2 / 3)
    assert hubs.loc["working memory", "ratio"] == pytest.approx(0.5 / (2 / 3))


def test_known_answer_with_a_family_of_terms():
    preds = ranked({"a": {"task": ["spatial n-back task", "Eriksen flanker task", "n-back task"]},
                    "b": {"task": ["Eriksen flanker task", "n-back task"]}})
    families = {"n-back": ["n-back task", "spatial n-back task"], "flanker": "Eriksen flanker task"}
    per_map = own_term_first(preds, {"a": "n-back", "b": "flanker"}, families)
    assert per_map["own_rank"].tolist() == [1.0, 1.0]
    assert per_map["other_rank"].tolist() == [2.0, 2.0]
    assert np.all(per_map["own_first"])
