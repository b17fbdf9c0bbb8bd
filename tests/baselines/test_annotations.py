"""Whole-phrase term counting, including the reference's zeroed multi-word names."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from niclip_ray.baselines.annotations import annotate, name_phrases, phrase_counts
from niclip_ray.errors import InputError

TEXTS = [
    "Spatial working memory was probed with a spatial working-memory task and an N-back task.",
    "The Eriksen flanker task; flanker interference. The flanker paradigm again.",
    "Nothing relevant here: memory, work, backing.",
]


def test_hand_counted_phrases():
    names = ["spatial working memory", "working memory", "n-back", "flanker task", "eriksen flanker task"]
    counts = phrase_counts(TEXTS, names)
    expected = np.array(
        [
            [2, 2, 1, 0, 0],  # "spatial working memory" twice (hyphen or not), each also "working memory"
            [0, 0, 0, 3, 1],  # "task"/"paradigm" are dropped: three "flanker", one "eriksen flanker"
            [0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(counts, expected)


def test_three_word_names_count_where_the_reference_zeroes_them():
    names = ["spatial working memory", "n-back"]
    ours = phrase_counts(TEXTS, names)
    assert ours[0].tolist() == [2, 1]
    # the reference: Neurosynth stop list + task/paradigm stripped from names, then 1-2 grams
    from nimare.utils import get_resource_path

    stoplist = set(Path(get_resource_path(), "neurosynth_stoplist.txt").read_text().split()) | {"task", "paradigm"}
    analyzer = CountVectorizer(stop_words=sorted(stoplist)).build_analyzer()
    stripped = [" ".join(analyzer(name)) for name in names]
    assert stripped == ["spatial working memory", ""]  # "back" is a Neurosynth stop word
    reference = CountVectorizer(vocabulary=["spatial working memory"], ngram_range=(1, 2), stop_words=sorted(stoplist))
    assert reference.fit_transform(TEXTS).sum() == 0


def test_tfidf_matches_sklearn_on_the_same_counts():
    names = ["flanker", "memory", "n-back"]
    counts, tfidf = annotate(pd.Series(TEXTS, index=["a", "b", "c"]), names)
    assert counts.loc["b", "flanker"] == 3 and counts.loc["c", "memory"] == 1 and counts.loc["a", "n-back"] == 1
    # sklearn's own vectorizer, with n-back spelled as one token, is an independent oracle
    oracle = TfidfVectorizer(vocabulary=["flanker", "memory", "nback"], token_pattern=r"[a-z0-9]+")
    expected = oracle.fit_transform([t.lower().replace("n-back", "nback") for t in TEXTS]).toarray()
    np.testing.assert_allclose(tfidf.to_numpy(), expected)
    assert list(tfidf.index) == ["a", "b", "c"] and tfidf.index.name == "id"


@pytest.mark.parametrize(("names", "message"), [(["task"], "no countable word"), (["a b", "a b"], "listed twice")])
def test_bad_names(names, message):
    with pytest.raises(InputError, match=message):
        name_phrases(names)
