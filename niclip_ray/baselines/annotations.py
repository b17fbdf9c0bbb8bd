"""Term annotations for the baselines: whole-phrase counts of vocabulary names in study texts.

The reference annotates studies with ``CountVectorizer(vocabulary=names, ngram_range=(1, 2))``
after stripping Neurosynth's stop list from the names. Two things silently zero terms there:

- a stripped name of three or more tokens never matches a 1- or 2-gram, and
- stop-word stripping empties names made of stop words and one-letter tokens (``"n-back"``
  becomes ``"back"`` under sklearn's default tokens, and ``"back"`` is itself a Neurosynth
  stop word).

Here a name and a text go through the same tokenizer (lower-case alphanumeric runs, so
``"N-back"``, ``"n back"`` and ``"n-back"`` agree) and only the generic words ``task`` and
``paradigm`` are dropped from both, as the reference adds them to its stop list. Each
name is then counted as a whole phrase (a contiguous token sequence) of any length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfTransformer

from niclip_ray.errors import InputError

#: Words dropped from names and texts alike ("flanker task" counts every "flanker").
GENERIC_WORDS = frozenset({"task", "paradigm"})
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str, drop: frozenset[str] = GENERIC_WORDS) -> list[str]:
    """Lower-case alphanumeric tokens of ``text`` without the words in ``drop``."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in drop]


def name_phrases(names: Sequence[str], drop: frozenset[str] = GENERIC_WORDS) -> list[tuple[str, ...]]:
    """Token phrases of vocabulary names.

    Raises
    ------
    InputError
        A name with no token left (e.g. ``"task"``), or a duplicate name.
    """
    seen: set[str] = set()
    phrases = []
    for name in names:
        if name in seen:
            raise InputError(f"vocabulary name {name!r} is listed twice")
        seen.add(name)
        phrase = tuple(tokenize(str(name), drop))
        if not phrase:
            raise InputError(f"vocabulary name {name!r} has no countable word once {sorted(drop)} are dropped")
        phrases.append(phrase)
    return phrases


def phrase_counts(texts: Sequence[str], names: Sequence[str], drop: frozenset[str] = GENERIC_WORDS) -> np.ndarray:
    """Count each name as a whole phrase in each text.

    Overlapping occurrences all count ("spatial working memory" also counts once for
    "working memory"), as n-gram counting does.

    Parameters
    ----------
    texts : sequence of str, length n_docs
    names : sequence of str, length n_names
    drop : frozenset of str
        Words removed from names and texts before matching.

    Returns
    -------
    (n_docs, n_names) int64 array
    """
    phrases = name_phrases(names, drop)
    by_first: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for column, phrase in enumerate(phrases):
        by_first.setdefault(phrase[0], []).append((phrase, column))
    counts = np.zeros((len(texts), len(phrases)), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = tokenize(text or "", drop)
        for start, token in enumerate(tokens):
            for phrase, column in by_first.get(token, ()):
                if tuple(tokens[start : start + len(phrase)]) == phrase:
                    counts[row, column] += 1
    return counts


def annotate(texts: pd.Series, names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts and tf-idf of vocabulary names for a set of studies.

    Parameters
    ----------
    texts : Series of str
        One text per study, indexed by study id.
    names : sequence of str
        Vocabulary names (column names of the results).

    Returns
    -------
    counts : DataFrame (n_studies, n_names) int64
    tfidf : DataFrame (n_studies, n_names) float64
        sklearn's default tf-idf (smooth idf, rows L2-normalised), as the reference's
        ``TfidfVectorizer``; a study mentioning no name has an all-zero row.
    """
    counts = phrase_counts(texts.fillna("").astype(str).tolist(), names)
    tfidf = TfidfTransformer().fit_transform(counts).toarray()
    index = pd.Index(texts.index.astype(str), name="id")
    return pd.DataFrame(counts, index=index, columns=list(names)), pd.DataFrame(tfidf, index=index, columns=list(names))
