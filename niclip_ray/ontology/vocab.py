"""Check that a vocabulary lists the ontology's tasks in the ontology's order.

The reference decoder indexes its hierarchy by position and silently assumes that the
vocabulary ``.txt`` follows ``CognitiveAtlas.task_names``; a swapped pair would send one
task's probability to another task's concepts. Every bundle and decode goes through
:func:`check_vocabulary_order`.
"""

from __future__ import annotations

from collections.abc import Sequence

from niclip_ray.errors import InputError
from niclip_ray.ontology.core import Ontology


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def check_vocabulary_order(names: Sequence[str], ontology: Ontology, source: str = "vocabulary") -> None:
    """Raise unless ``names`` equals the ontology's task names, in the same order.

    Names are compared case-insensitively after collapsing white space.

    Parameters
    ----------
    names : sequence of str
        Vocabulary terms in embedding order.
    ontology : Ontology
    source : str
        What to call ``names`` in the error message (e.g. a file path).

    Raises
    ------
    InputError
        Saying whether terms are missing, extra, or only reordered, and where the first
        difference is.
    """
    ours = [_norm(n) for n in names]
    theirs = [_norm(n) for n in ontology.task_names]
    if ours == theirs:
        return
    missing = [n for n, k in zip(ontology.task_names, theirs) if k not in set(ours)]
    extra = [n for n, k in zip(names, ours) if k not in set(theirs)]
    if missing or extra:
        raise InputError(
            f"{source} ({len(ours)} terms) does not match the ontology's tasks ({len(theirs)}): "
            f"{len(extra)} not in the ontology (e.g. {extra[:3]}), {len(missing)} ontology tasks "
            f"missing (e.g. {missing[:3]})"
        )
    first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
    raise InputError(
        f"{source} lists the ontology's tasks in another order: position {first} is "
        f"{names[first]!r} but the ontology has {ontology.task_names[first]!r}; "
        f"the vocabulary order must equal the ontology's task order"
    )


def align_to_vocabulary(ontology: Ontology, names: Sequence[str]) -> Ontology:
    """Restrict and reorder the ontology's tasks to ``names`` (e.g. a custom vocabulary).

    Raises
    ------
    InputError
        When some names are not tasks of the ontology.
    """
    index = {_norm(n): i for i, n in enumerate(ontology.task_names)}
    unknown = [n for n in names if _norm(n) not in index]
    if unknown:
        raise InputError(f"{len(unknown)} vocabulary terms are not ontology tasks (e.g. {unknown[:3]})")
    tasks = ontology.tasks.iloc[[index[_norm(n)] for n in names]].reset_index(drop=True)
    links = ontology.task_concepts[ontology.task_concepts["task_id"].isin(tasks["task_id"])].reset_index(drop=True)
    return Ontology(tasks, ontology.concepts, ontology.domains, links, dict(ontology.meta))
