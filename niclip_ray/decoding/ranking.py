"""What orders a map's tasks (``rank_by``) and what flags its top terms (against the map, hub).

``docs/method.md``, "Ranking and flags". Tasks are ranked by one of three scores of
:class:`~niclip_ray.decoding.posterior.TaskPosterior`:

- ``posterior`` (the paper's): likelihood × prior, renormalised;
- ``bayes_factor``: how far the map moved each task's odds away from its prior odds;
- ``likelihood``: the map alone (the softmax of the scaled similarities; same order as the
  similarity).

Concepts and domains are always ranked by their noisy-OR posterior.

Two flags mark top terms the map does not support on its own:

- ``against_map`` (tasks): a Bayes factor below 1, i.e. a posterior below the prior. The
  map lowered the task's probability; only its prior keeps it up.
- ``hub`` (tasks and concepts): the term is in the top :data:`HUB_TOP_K` of more than
  :data:`HUB_SHARE` of the maps decoded together (one :meth:`Decoder.decode_features` call:
  a decode shard, a ``transform`` call), counted over every term's rank, not only the kept
  ``topk``. A term that tops most maps whatever they show says little about any one of
  them. Unknown (null) with fewer than :data:`HUB_MIN_MAPS` maps, and for domains (five of
  the ten domains are a top 5 by construction).

Levels can disagree (:func:`level_disagreement`): the top concept need not be one the top
task measures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from niclip_ray.defaults import RANK_BY
from niclip_ray.errors import ParameterError

if TYPE_CHECKING:  # only annotations: the CLI parses --rank-by without pandas or scipy
    import pandas as pd

    from niclip_ray.decoding.posterior import TaskPosterior
    from niclip_ray.ontology.core import Ontology

DEFAULT_RANK_BY = RANK_BY[0]
#: A term is a hub when it is in the top HUB_TOP_K of more than HUB_SHARE of the maps decoded together ...
HUB_TOP_K = 5
HUB_SHARE = 0.5
#: ... and at least this many maps were decoded together (with fewer, every shared term would be one).
HUB_MIN_MAPS = 5
#: Levels with a hub flag.
HUB_LEVELS = ("task", "concept")


def parse_rank_by(value: str) -> str:
    """The :data:`RANK_BY` name of ``value`` (``bayes-factor`` and ``bayes_factor`` both read as ``bayes_factor``).

    Raises
    ------
    ParameterError
        For any other value; it names ``rank_by``.
    """
    name = str(value).strip().lower().replace("-", "_")
    if name not in RANK_BY:
        choices = ", ".join(name.replace("_", "-") for name in RANK_BY)
        raise ParameterError("rank_by", f"must be one of {choices}, got {value!r}")
    return name


def task_scores(post: TaskPosterior, rank_by: str) -> np.ndarray:
    """The ``(n, V)`` scores that order tasks under ``rank_by`` (a :data:`RANK_BY` name)."""
    return getattr(post, parse_rank_by(rank_by))


def against_map(bayes_factor: np.ndarray) -> np.ndarray:
    """Whether each Bayes factor is below 1 (object array: True, False, or None where it is NaN).

    A Bayes factor below 1 means posterior < prior: the map argues against the task. With the
    posterior ``lik_i prior_i / sum_j lik_j prior_j``, that is ``lik_i < sum_j lik_j prior_j``,
    a likelihood below its prior-weighted mean. NaN (a prior of 0) has no answer.
    """
    bayes_factor = np.asarray(bayes_factor, dtype=np.float64)
    flags = (bayes_factor < 1.0).astype(object)
    flags[np.isnan(bayes_factor)] = None
    return flags


def hub_terms(order: np.ndarray) -> np.ndarray | None:
    """Which terms are hubs among maps ranked together (see the module docstring).

    Parameters
    ----------
    order : (n, V) int array
        Every term's index per map, best first (:func:`~niclip_ray.decoding.posterior.top_k` with ``k=None``).

    Returns
    -------
    (V,) bool array, or None
        None when fewer than :data:`HUB_MIN_MAPS` maps were ranked.
    """
    order = np.atleast_2d(order)
    n_maps, n_terms = order.shape
    if n_maps < HUB_MIN_MAPS:
        return None
    counts = np.bincount(order[:, :HUB_TOP_K].reshape(-1), minlength=n_terms)
    return counts / n_maps > HUB_SHARE


def level_disagreement(rows: pd.DataFrame, ontology: Ontology | None) -> str | None:
    """Why a map's top concept is not one its top task measures, or None when it is (or cannot be told).

    Concepts are the noisy-OR of every linked task's posterior, so many tasks of middling
    posterior can outweigh the top task, whose own concepts then rank lower; and the concept
    order never follows ``rank_by``.

    Parameters
    ----------
    rows : DataFrame
        One map's decode rows (``level``, ``rank``, ``term``).
    ontology : Ontology or None
        The bundle's ontology (None: no note).
    """
    top = rows[rows["rank"] == 1].set_index("level")["term"]
    if ontology is None or not {"task", "concept"} <= set(top.index):
        return None
    task, concept = str(top["task"]), str(top["concept"])
    if concept in ontology.concepts_of(task):
        return None
    return (f"the top concept '{concept}' is not one the top task '{task}' measures: concepts and domains are "
            "noisy-ORs over every task's posterior, not the top task's, and keep their posterior order")
