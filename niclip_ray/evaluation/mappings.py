"""Ground-truth mappings: from map labels to true terms, and the reference's HCP benchmark.

:func:`truth_from_labels` turns one label per map (e.g. a corpus study's ``label``, or a
NeuroVault task name) into the evaluator's long truth table through a label → terms table.
:data:`HCP_BENCHMARK` is the reference's 7-map HCP group benchmark (NeuroVault collection
457) at the task level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from niclip_ray.decoding.schema import LEVELS
from niclip_ray.errors import InputError

#: NeuroVault collection 457: image id, contrast, true Cognitive Atlas task (``docs/method.md``, "Evaluation").
HCP_BENCHMARK = pd.DataFrame(
    [
        ("3128", "EMOTION FACES-SHAPES", "emotion processing fMRI task paradigm"),
        ("3137", "GAMBLING REWARD", "gambling fMRI task paradigm"),
        ("3142", "LANGUAGE STORY-MATH", "language processing fMRI task paradigm"),
        ("3152", "MOTOR AVG", "motor fMRI task paradigm"),
        ("8820", "RELATIONAL REL-MATCH", "relational processing fMRI task paradigm"),
        ("3180", "SOCIAL TOM-RANDOM", "social cognition (theory of mind) fMRI task paradigm"),
        ("3190", "WM 2BK-0BK", "working memory fMRI task paradigm"),
    ],
    columns=["map_id", "contrast", "task"],
)


def truth_from_labels(
    map_labels: Mapping[str, str], label_terms: Mapping[str, Mapping[str, Sequence[str]]]
) -> pd.DataFrame:
    """Build the long truth table (``map_id, level, term``) from one label per map.

    Parameters
    ----------
    map_labels : mapping
        Map id -> label (e.g. ``{"study-1": "n-back"}``).
    label_terms : mapping
        Label -> level -> true terms, e.g.
        ``{"n-back": {"task": ["n-back task"], "domain": ["Executive cognitive control"]}}``.

    Returns
    -------
    DataFrame
        One row per map and true term, sorted.

    Raises
    ------
    InputError
        A map label missing from ``label_terms``, or an unknown level.
    """
    rows = []
    for map_id, label in map_labels.items():
        if label not in label_terms:
            raise InputError(f"map {map_id}: label {label!r} has no terms (known labels: {sorted(label_terms)})")
        for level, terms in label_terms[label].items():
            if level not in LEVELS:
                raise InputError(f"label {label!r}: unknown level {level!r}; expected one of {list(LEVELS)}")
            rows += [(str(map_id), level, str(term)) for term in terms]
    truth = pd.DataFrame(rows, columns=["map_id", "level", "term"]).drop_duplicates()
    return truth.sort_values(["map_id", "level", "term"]).reset_index(drop=True)
