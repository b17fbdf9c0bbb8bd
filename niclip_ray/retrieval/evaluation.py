"""Held-out evaluation of retrieval, in both directions, with seeded nulls and baselines.

* **image -> own abstract**: each held-out study's image latent ranks the held-out studies'
  text latents; recall@k and the median rank of its own text, against a permutation null
  (the image-text pairing shuffled, ``n_permutations`` times with ``seed``).
* **text -> map**: each held-out study's text latent gives a predicted map
  (:attr:`Index.ridge <niclip_ray.retrieval.index.Index.ridge>`); its Pearson correlation
  with the study's MKDA map over the brain-mask voxels is compared with two baselines
  reconstructed the same way (through the atlas): the mean training map, and the map of
  the training study nearest in raw text-embedding space. Per-study differences are
  tested with a two-sided Wilcoxon signed-rank test. The figures are reported as they
  come: a model that does not beat the mean map shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from niclip_ray.atomic import write_csv
from niclip_ray.errors import InputError
from niclip_ray.vectors import l2_normalise

DEFAULT_KS = (1, 10)
BASELINES = ("mean_training_map", "nearest_text_study")


def own_ranks(similarity: np.ndarray, pairing: np.ndarray | None = None) -> np.ndarray:
    """Rank (1 = best) of candidate ``pairing[i]`` in row ``i`` of a similarity matrix.

    Ties count in the query's favour (only strictly higher scores rank above).
    """
    n = len(similarity)
    pairing = np.arange(n) if pairing is None else pairing
    own = similarity[np.arange(n), pairing]
    return 1 + (similarity > own[:, None]).sum(axis=1)


def image_to_text(
    image_latents: np.ndarray, text_latents: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS,
    n_permutations: int = 1000, seed: int = 0,
) -> dict:
    """Image -> own-text retrieval among ``n`` paired held-out studies.

    Returns
    -------
    dict
        ``n``, ``recall@k`` and its null mean and p-value (``recall@k_null``,
        ``recall@k_p``) per k, ``median_rank``, ``median_rank_null`` and ``median_rank_p``;
        p-values are ``(1 + #null at least as good) / (1 + n_permutations)``.
    """
    similarity = l2_normalise(image_latents, dtype=np.float64) @ l2_normalise(text_latents, dtype=np.float64).T
    ranks = own_ranks(similarity)
    rng = np.random.default_rng(seed)
    null = np.stack([own_ranks(similarity, rng.permutation(len(ranks))) for _ in range(n_permutations)])
    result: dict = {"n": len(ranks)}
    for k in ks:
        observed, chance = float((ranks <= k).mean()), (null <= k).mean(axis=1)
        result[f"recall@{k}"] = observed
        result[f"recall@{k}_null"] = float(chance.mean())
        result[f"recall@{k}_p"] = float((1 + (chance >= observed).sum()) / (1 + n_permutations))
    median, null_median = float(np.median(ranks)), np.median(null, axis=1)
    result.update(median_rank=median, median_rank_null=float(null_median.mean()),
                  median_rank_p=float((1 + (null_median <= median).sum()) / (1 + n_permutations)))
    return result


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` ``(n, v)``; NaN for a constant row."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a, axis=1, keepdims=True)
    b = np.asarray(b, dtype=np.float64) - np.mean(b, axis=1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)


def paired_test(ours: np.ndarray, baseline: np.ndarray) -> dict:
    """Two-sided Wilcoxon signed-rank test of per-study differences ``ours - baseline``."""
    from scipy.stats import wilcoxon

    diff = np.asarray(ours) - np.asarray(baseline)
    diff = diff[np.isfinite(diff)]
    if not len(diff) or np.allclose(diff, 0):
        return {"n": len(diff), "mean_difference": float(diff.mean()) if len(diff) else np.nan, "statistic": np.nan,
                "p": 1.0}
    test = wilcoxon(diff)
    return {"n": len(diff), "mean_difference": float(diff.mean()), "statistic": float(test.statistic),
            "p": float(test.pvalue)}


@dataclass
class RetrievalEvaluation:
    """Both directions on the held-out studies.

    Attributes
    ----------
    image_to_text : dict
        See :func:`image_to_text`.
    map_correlations : DataFrame
        ``study_id`` and one column of Pearson r per method: ``ridge`` and :data:`BASELINES`.
    paired_tests : DataFrame
        One row per baseline: ``baseline``, ``mean_r_ridge``, ``mean_r_baseline`` and
        :func:`paired_test`'s keys.
    ridge_alpha : float
    """

    image_to_text: dict
    map_correlations: pd.DataFrame
    paired_tests: pd.DataFrame
    ridge_alpha: float

    def write(self, out_dir: str | Path) -> list[Path]:
        """``retrieval_image_to_text.csv``, ``retrieval_map_correlations.csv``, ``retrieval_paired_tests.csv``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"retrieval_{name}.csv" for name in ("image_to_text", "map_correlations", "paired_tests")]
        write_csv(paths[0], pd.DataFrame([self.image_to_text]))
        write_csv(paths[1], self.map_correlations)
        write_csv(paths[2], self.paired_tests.assign(ridge_alpha=self.ridge_alpha))
        return paths

    def record(self) -> dict:
        """What a search needs to know: recall and its null, and text -> map against the mean training map."""
        mean_map = self.paired_tests.set_index("baseline").loc["mean_training_map"]
        return {
            "n_heldout": int(self.image_to_text["n"]),
            **{key: float(self.image_to_text[key]) for key in ("recall@10", "recall@10_null")
               if key in self.image_to_text},
            "text_to_map": {"mean_r": float(mean_map["mean_r_ridge"]),
                            "mean_r_mean_training_map": float(mean_map["mean_r_baseline"]),
                            "p": float(mean_map["p"])},
        }

    @classmethod
    def read(cls, out_dir: str | Path) -> RetrievalEvaluation | None:
        """The evaluation :meth:`write` left in ``out_dir``, or None when a file is missing."""
        paths = [Path(out_dir) / f"retrieval_{name}.csv" for name in ("image_to_text", "map_correlations",
                                                                     "paired_tests")]
        if not all(path.is_file() for path in paths):
            return None
        paired = pd.read_csv(paths[2])
        return cls(pd.read_csv(paths[0]).iloc[0].to_dict(), pd.read_csv(paths[1], dtype={"study_id": str}),
                   paired.drop(columns="ridge_alpha"), float(paired["ridge_alpha"].iloc[0]))


#: Held-out studies whose maps are compared at once (memory: about 5 dense float64 maps each).
MAP_CHUNK = 256


def mkda_maps(corpus_dir: str | Path, study_ids: list[str], chunk: int = MAP_CHUNK) -> Iterator[np.ndarray]:
    """``(≤ chunk, n_mask_voxels)`` float32 MKDA maps (10 mm spheres of 1) of studies, on the 2 mm
    brain mask, ``chunk`` studies at a time in ``study_ids`` order."""
    from niclip_ray.atlas.mask import brain_mask_grid
    from niclip_ray.corpus import load_corpus
    from niclip_ray.features.mkda import study_map

    grid = brain_mask_grid()
    coords = load_corpus(corpus_dir).coordinates.groupby("study_id")
    for start in range(0, len(study_ids), chunk):
        part = study_ids[start : start + chunk]
        maps = np.zeros((len(part), grid.n_voxels), dtype=np.float32)
        for row, sid in enumerate(part):
            indices, values = study_map(coords.get_group(sid)[["x", "y", "z"]].to_numpy(float), grid)
            maps[row, indices] = values
        yield maps


def evaluate_retrieval(index, corpus_dir: str | Path, text_features: str | Path, *,
                       n_permutations: int = 1000, seed: int = 0, ks: tuple[int, ...] = DEFAULT_KS) -> RetrievalEvaluation:
    """Evaluate an :class:`~niclip_ray.retrieval.index.Index` on its held-out (``test``) studies.

    Parameters
    ----------
    index : Index
    corpus_dir : path
        The corpus, for the held-out studies' MKDA maps.
    text_features : path
        The text stage directory the index was built from (raw embeddings, for the
        nearest-text baseline).
    n_permutations, seed : int
        Permutation null of the image -> text retrieval.

    Raises
    ------
    InputError
        Fewer than 2 held-out or training studies.
    """
    from niclip_ray.features.text_table import read_text_features

    studies = index.studies
    test = np.flatnonzero(studies.folds == "test")
    train = np.flatnonzero(studies.folds == "train")
    if len(test) < 2 or len(train) < 2:
        raise InputError(f"the index has {len(test)} held-out and {len(train)} training studies; "
                         "evaluation needs at least 2 of each (a bundle with a recorded split)")
    retrieval = image_to_text(studies.image_latents[test], studies.text_latents[test], ks, n_permutations, seed)

    test_ids, train_ids = studies.study_ids[test].tolist(), studies.study_ids[train].tolist()
    raw = read_text_features(text_features)
    position = {sid: i for i, sid in enumerate(raw.study_ids)}
    raw_test = l2_normalise(raw.embeddings[[position[s] for s in test_ids]], dtype=np.float64)
    raw_train = l2_normalise(raw.embeddings[[position[s] for s in train_ids]], dtype=np.float64)
    nearest = train[np.argmax(raw_test @ raw_train.T, axis=1)]
    coefficients = {
        "ridge": index.predict_coefficients(studies.text_latents[test]),
        "mean_training_map": np.repeat(studies.coefficients[train].mean(axis=0, keepdims=True), len(test), axis=0),
        "nearest_text_study": studies.coefficients[nearest],
    }
    builder = index.map_builder
    found: dict[str, list[np.ndarray]] = {method: [] for method in coefficients}
    for start, truth in zip(range(0, len(test_ids), MAP_CHUNK), mkda_maps(corpus_dir, test_ids, MAP_CHUNK)):
        for method, coef in coefficients.items():
            found[method].append(pearson_rows(builder.masked(coef[start : start + len(truth)]), truth))
    correlations = pd.DataFrame({"study_id": test_ids, **{m: np.concatenate(r) for m, r in found.items()}})
    tests = pd.DataFrame([
        {"baseline": name, "mean_r_ridge": float(np.nanmean(correlations["ridge"])),
         "mean_r_baseline": float(np.nanmean(correlations[name])),
         **paired_test(correlations["ridge"].to_numpy(), correlations[name].to_numpy())}
        for name in BASELINES
    ])
    return RetrievalEvaluation(retrieval, correlations, tests, index.ridge.alpha)


#: File beside an index's parts recording its last held-out evaluation (:meth:`RetrievalEvaluation.record`).
INDEX_EVALUATION = "evaluation.json"
#: A predicted map counts as better than the mean training map at this two-sided p.
MAP_ALPHA = 0.05


def map_caveat(record: dict | None) -> str | None:
    """Why a text query's predicted map should not be read as that query's, from an index's evaluation.

    None when the index was never evaluated, or when its predicted maps correlated with the
    held-out studies' maps better than the mean training map did (higher mean r, p <
    :data:`MAP_ALPHA`).
    """
    if not record or "text_to_map" not in record:
        return None
    found = record["text_to_map"]
    if found["mean_r"] > found["mean_r_mean_training_map"] and found["p"] < MAP_ALPHA:
        return None
    return (f"on {record.get('n_heldout', '?')} held-out studies this index's text -> map predictions were not "
            f"better than the mean training map (mean r {found['mean_r']:.3f} vs {found['mean_r_mean_training_map']:.3f}, "
            f"p {found['p']:.2g}; `evaluate --index`): the map shows the corpus's average activation more than "
            "this query's")
