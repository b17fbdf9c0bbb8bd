"""The held-out evaluation of the real-scale run: labelled maps no training study describes.

Three parts, all plain pandas/numpy:

- **Exclusion** (:func:`heldout_matches`): every training-corpus study that is one of the
  held-out studies, matched by PMID, DOI or normalised title, so that it can be removed
  before training.
- **Truth** (:func:`label_tasks`): a label's true tasks come from the ontology's names,
  never from the model (the n-back family is every task whose name says n-back).
- **Scores per label** (:func:`label_table`): the best true term's rank, hit@k and MRR of
  the maps of one label, each against the permutation null of
  :mod:`niclip_ray.evaluation.null` (prediction lists shuffled across *all* maps, so the
  maps of one label get other maps' lists), and :func:`hubness`, how often each term sits
  in the top k against the k/n a term would get by chance.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from niclip_ray.errors import InputError
from niclip_ray.evaluation import null as nulls
from niclip_ray.evaluation.metrics import pair_scores, rank_matrix, truth_matrix

#: Cut-offs of the held-out table's hit@k columns.
HIT_K = (1, 5, 10)
#: A label's tasks: ``pattern`` (a regular expression searched in every task name,
#: case-insensitive) or ``names`` (exact names, case-insensitive).
LABEL_RULES: dict[str, dict[str, object]] = {
    "n-back": {"pattern": r"\bn-?\s?back\b"},
    "flanker": {"names": ["Eriksen flanker task"]},
    # nilearn's sample map is "left vs right motor" (NeuroVault image 10426): tasks of
    # moving the hands or fingers, and the generic motor paradigm
    "motor": {"names": ["finger tapping task", "Tapping task", "Continuous Tapping Task",
                        "motor fMRI task paradigm", "motor sequencing task"]},
}
_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


def normalise_title(title: object) -> str:
    """Lower-case ASCII words of a title joined by single spaces ('' for a missing title)."""
    if title is None or (isinstance(title, float) and np.isnan(title)):
        return ""
    ascii_text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode()
    return " ".join(_WORD.findall(ascii_text.lower()))


def normalise_doi(doi: object) -> str:
    """A DOI without its resolver prefix, lower-cased ('' when missing)."""
    if doi is None or (isinstance(doi, float) and np.isnan(doi)):
        return ""
    return _DOI_PREFIX.sub("", str(doi).strip()).strip().lower()


def _keys(studies: pd.DataFrame) -> dict[str, pd.Series]:
    """The three match keys of each study (empty where unknown), indexed by study id."""
    index = studies["study_id"].astype(str)

    def get(column: str) -> pd.Series:
        return studies[column] if column in studies else pd.Series("", index=studies.index)

    pmid = get("pmid").fillna("").astype(str).str.strip().str.removesuffix(".0")
    return {
        "pmid": pd.Series(pmid.to_numpy(), index=index),
        "doi": pd.Series(get("doi").map(normalise_doi).to_numpy(), index=index),
        "title": pd.Series(get("title").map(normalise_title).to_numpy(), index=index),
    }


def heldout_matches(corpus: pd.DataFrame, heldout: pd.DataFrame) -> pd.DataFrame:
    """Training-corpus studies that are held-out studies, by PMID, DOI or normalised title.

    Parameters
    ----------
    corpus, heldout : DataFrame
        Study tables with ``study_id`` and any of ``pmid``, ``doi``, ``title``.

    Returns
    -------
    DataFrame
        ``study_id, heldout_id, matched_by`` (``pmid``, ``doi`` or ``title``), one row per
        key that matched, sorted.
    """
    corpus_keys, heldout_keys = _keys(corpus), _keys(heldout)
    rows = []
    for key in ("pmid", "doi", "title"):
        wanted = heldout_keys[key][heldout_keys[key] != ""]
        lookup = {value: study for study, value in wanted.items()}
        found = corpus_keys[key][corpus_keys[key].isin(lookup)]
        rows += [(study, lookup[value], key) for study, value in found.items()]
    frame = pd.DataFrame(rows, columns=["study_id", "heldout_id", "matched_by"])
    return frame.sort_values(["study_id", "matched_by"]).reset_index(drop=True)


def label_tasks(ontology, rules: Mapping[str, Mapping[str, object]] = LABEL_RULES) -> dict[str, list[str]]:
    """The ontology's tasks for each label, as named in the ontology.

    Raises
    ------
    InputError
        A label none of whose tasks is in the ontology.
    """
    names = ontology.tasks["name"].astype(str)
    by_key = {name.casefold(): name for name in names}
    found = {}
    for label, rule in rules.items():
        if "pattern" in rule:
            tasks = [name for name in names if re.search(str(rule["pattern"]), name, re.IGNORECASE)]
        else:
            tasks = [by_key[name.casefold()] for name in rule["names"] if name.casefold() in by_key]
        if not tasks:
            raise InputError(f"the ontology ({ontology.summary()}) has no task for label {label!r} ({dict(rule)})")
        found[label] = tasks
    return found


def label_terms(ontology, tasks: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """Each label's true tasks, the concepts they measure and those concepts' domains."""
    domain_names = ontology.domains.set_index("domain_id")["name"]
    concept_domain = ontology.concepts.set_index("name")["domain_id"]
    terms = {}
    for label, names in tasks.items():
        concepts = sorted({c for name in names for c in ontology.concepts_of(name)})
        domains = sorted({domain_names[concept_domain[c]] for c in concepts if concept_domain[c] in domain_names})
        terms[label] = {"task": list(names), "concept": concepts, "domain": domains}
    return terms


def _level_ranks(predictions: pd.DataFrame, truth: pd.DataFrame, level: str, map_ids: list[str]):
    rows = predictions[(predictions["level"] == level) & predictions["error"].isna()]
    level_truth = truth[truth["level"] == level]
    terms = sorted(set(rows["term"]) | set(level_truth["term"]))
    return rank_matrix(rows, map_ids, terms), truth_matrix(level_truth, map_ids, terms), terms


def label_table(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    map_labels: Mapping[str, str],
    *,
    levels: Sequence[str] = ("task", "concept"),
    ks: Sequence[int] = HIT_K,
    n_permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Scores of each label's maps at each level, against the permutation null.

    Parameters
    ----------
    predictions : DataFrame
        One backend's decode-contract rows (``map_id, level, rank, term, error``), every
        term of the vocabulary ranked.
    truth : DataFrame
        Long truth (``map_id, level, term``).
    map_labels : mapping
        Map id -> label; the maps scored (all of them enter the permutations).
    levels, ks : sequences
        Levels scored and the hit@k cut-offs.
    n_permutations, seed : int
        The null: map ``i`` keeps its truth and gets the list of map ``perm[i]``.

    Returns
    -------
    DataFrame
        One row per label, level and statistic: ``label, level, n_maps, n_true_terms,
        statistic, observed, null_mean, p_value``. Statistics: ``median_best_rank`` (p is
        the share of nulls at or *below* the observed median), ``hit@k`` and ``mrr``.
    """
    decoded = set(predictions["map_id"])
    map_ids = sorted(m for m in map_labels if m in decoded)
    if not map_ids:
        raise InputError("no labelled map has predictions")
    labels = np.array([map_labels[m] for m in map_ids])
    perms = nulls.permutations(len(map_ids), n_permutations, seed)
    rows = []
    for level in levels:
        ranks, truth_m, _ = _level_ranks(predictions, truth, level, map_ids)
        scorable = truth_m.any(axis=1)
        best = np.full((len(map_ids), len(map_ids)), np.inf)
        if scorable.any():
            best[scorable] = pair_scores(truth_m[scorable], ranks, k=1).best_rank
        for label in sorted(set(labels)):
            own = np.flatnonzero((labels == label) & scorable)
            n_true = int(truth_m[labels == label].any(axis=0).sum())
            if not len(own):
                rows.append({"label": label, "level": level, "n_maps": 0, "n_true_terms": n_true,
                             "statistic": "no true term in the vocabulary"})
                continue
            observed = best[own, own]
            shuffled = best[own[None, :], perms[:, own]]  # (n_permutations, n_own)
            stats = {"median_best_rank": np.median, "mrr": lambda r, axis=None: (1.0 / r).mean(axis=axis)}
            stats.update({f"hit@{k}": (lambda r, axis=None, k=k: (r <= k).mean(axis=axis)) for k in ks})
            for name, fn in stats.items():
                obs, null = float(fn(observed)), fn(shuffled, axis=1)
                lower_is_better = name == "median_best_rank"
                p = nulls.empirical_p(-null, -obs) if lower_is_better else nulls.empirical_p(null, obs)
                rows.append({"label": label, "level": level, "n_maps": len(own), "n_true_terms": n_true,
                             "statistic": name, "observed": obs, "null_mean": float(null.mean()),
                             "p_value": float(p)})
    return pd.DataFrame(rows, columns=["label", "level", "n_maps", "n_true_terms", "statistic", "observed",
                                       "null_mean", "p_value"])


def term_in_top(
    predictions: pd.DataFrame, map_ids: Sequence[str], all_maps: Sequence[str], term: str, level: str, k: int,
    n_permutations: int = 1000, seed: int = 0,
) -> dict[str, float]:
    """Share of ``map_ids`` whose ``level`` list has ``term`` in the top ``k``, against the null.

    The null gives each of ``map_ids`` the list of a map drawn by permuting ``all_maps``
    (the same permutations as :func:`label_table`).
    """
    all_maps = sorted(all_maps)
    ranks, _, terms = _level_ranks(predictions, pd.DataFrame(columns=["map_id", "level", "term"]), level, all_maps)
    if term not in terms:
        raise InputError(f"{term!r} is not among the {level} predictions")
    in_top = ranks[:, terms.index(term)] <= k
    own = pd.Index(all_maps).get_indexer(list(map_ids))
    perms = nulls.permutations(len(all_maps), n_permutations, seed)
    observed = float(in_top[own].mean())
    null = in_top[perms[:, own]].mean(axis=1)
    return {"n_maps": len(own), "observed": observed, "null_mean": float(null.mean()),
            "p_value": float(nulls.empirical_p(null, observed))}


def hubness(predictions: pd.DataFrame, level: str = "task", k: int = 10, top: int = 15) -> pd.DataFrame:
    """How often each term is in a map's top ``k``, against the ``k / n_terms`` of chance.

    Returns
    -------
    DataFrame
        The ``top`` most frequent terms: ``term, n_maps_in_top_k, share, chance_share,
        ratio`` (share / chance share; a decoder without hubs keeps every ratio near 1).
    """
    rows = predictions[(predictions["level"] == level) & predictions["error"].isna()]
    n_maps, n_terms = rows["map_id"].nunique(), rows["term"].nunique()
    if not n_maps:
        raise InputError(f"no {level} predictions to measure hubness on")
    counts = rows.loc[rows["rank"] <= k, "term"].value_counts()
    chance = k / n_terms
    frame = pd.DataFrame({"term": counts.index, "n_maps_in_top_k": counts.to_numpy()})
    frame["share"] = frame["n_maps_in_top_k"] / n_maps
    frame["chance_share"] = chance
    frame["ratio"] = frame["share"] / chance
    return frame.head(top).reset_index(drop=True)
