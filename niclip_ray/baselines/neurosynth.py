"""Neurosynth-style baseline: a correlation decoder over per-term MKDA chi-square maps.

For each term, MKDAChi2 compares the training studies whose tf-idf for the term is at
least ``frequency_threshold`` against the other training studies, and the decoder keeps the
``z_desc-association`` map. A map is decoded by its Pearson correlation with each term's
map (Yarkoni et al., 2011; Salo et al., 2023), as the reference's ``baseline_train.py``;
the correlation is NiMARE's ``pearson`` on the masked map, as ``CorrelationDecoder.transform``.

Two engines fit the same maps. ``sparse`` (the default) builds the studies' MKDA maps once
as a sparse matrix and computes every term's association map from voxel counts
(:mod:`niclip_ray.baselines.association`); ``nimare`` runs NiMARE's
``CorrelationDecoder(meta_estimator=MKDAChi2())``, one meta-analysis per term, and is the
oracle the sparse engine is tested against (it takes hours on ~15,000 studies and ~850 terms).
Both keep the terms NiMARE keeps: those some but not all training studies mention.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.atlas.mask import MaskGrid
from niclip_ray.baselines.association import activation_matrix, association_z, correlate, map_moments
from niclip_ray.baselines.base import Baseline
from niclip_ray.baselines.dataset import TrainingSplit, build_dataset
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.mkda import study_voxels

FEATURE_GROUP = "terms_tfidf"
#: Ways to fit the term maps: our sparse counts, or NiMARE's CorrelationDecoder (the oracle).
ENGINES = ("sparse", "nimare")
#: The only MKDAChi2 map the sparse engine computes.
ASSOCIATION = "z_desc-association"


def decodable_terms(tfidf: pd.DataFrame, threshold: float) -> tuple[list[str], np.ndarray]:
    """The terms NiMARE's correlation decoder fits, and the studies that mention each.

    A study mentions a term when its tf-idf is at least ``threshold``; a term mentioned by
    no study or by every study has no comparison set and is left out, as NiMARE does.

    Parameters
    ----------
    tfidf : DataFrame (n_studies, n_terms)
    threshold : float

    Returns
    -------
    terms : list of str
        Sorted by name, NiMARE's order (its label matrix sorts the annotation columns).
    labels : (len(terms), n_studies) bool array
    """
    mentions = tfidf.to_numpy() >= threshold
    n_mentions = mentions.sum(axis=0)
    names = [str(term) for term in tfidf.columns]
    kept = sorted((j for j, n in enumerate(n_mentions) if 0 < n < len(tfidf)), key=names.__getitem__)
    return [names[j] for j in kept], mentions[:, kept].T


def study_activations(split: TrainingSplit, study_ids: pd.Index, grid: MaskGrid):
    """The binary MKDA maps (r = 10 mm) of ``study_ids``, one row each, as a sparse matrix."""
    xyz = split.coordinates[["x", "y", "z"]].to_numpy(dtype=np.float64)
    rows = split.coordinates.groupby("study_id", sort=False).indices
    return activation_matrix((study_voxels(xyz[rows[sid]], grid) for sid in study_ids), grid.n_voxels)


class NeurosynthBaseline(Baseline):
    """Correlation decoder on per-term MKDAChi2 association maps.

    Parameters
    ----------
    section : str
        Text section the annotations are counted in (abstract, body or all).
    frequency_threshold : float
        Minimum tf-idf for a study to count as mentioning a term (reference: 0.001).
    target_image : str
        MKDAChi2 map correlated with the input maps (reference: ``z_desc-association``,
        the only one the ``sparse`` engine computes).
    engine : str
        ``sparse`` (all terms from one sparse study-by-voxel matrix) or ``nimare``
        (NiMARE's CorrelationDecoder, one MKDAChi2 fit per term).
    n_cores : int
        Cores NiMARE may use to fit terms in parallel (``nimare`` engine; 1 keeps shared
        machines usable).

    Attributes
    ----------
    term_maps_ : (n_terms, n_voxels) float32 array
        The fitted terms' maps over the template mask, in ``terms_`` order.
    decoder_ : nimare.decode.continuous.CorrelationDecoder
        The fitted NiMARE decoder (``nimare`` engine only).
    """

    name = "neurosynth"

    def __init__(
        self,
        section: str = "abstract",
        frequency_threshold: float = 0.001,
        target_image: str = ASSOCIATION,
        engine: str = "sparse",
        n_cores: int = 1,
    ) -> None:
        super().__init__(section=section)
        if not frequency_threshold > 0:
            raise ParameterError("frequency_threshold", f"of the neurosynth baseline must be positive, got "
                                                        f"{frequency_threshold}")
        if engine not in ENGINES:
            raise ParameterError("engine", f"of the neurosynth baseline must be one of {', '.join(ENGINES)}, "
                                           f"got {engine!r}")
        if engine == "sparse" and target_image != ASSOCIATION:
            raise ParameterError("target_image", f"{target_image!r} needs engine='nimare'; the sparse engine "
                                                 f"computes {ASSOCIATION} only")
        self.frequency_threshold = frequency_threshold
        self.target_image = target_image
        self.engine = engine
        self.n_cores = n_cores

    def _fit(self, split: TrainingSplit) -> list[str]:
        terms = self._fit_nimare(split) if self.engine == "nimare" else self._fit_sparse(split)
        self.moments_ = map_moments(self.term_maps_)
        return terms

    def _fit_sparse(self, split: TrainingSplit) -> list[str]:
        terms, labels = decodable_terms(self.tfidf_, self.frequency_threshold)
        if not terms:
            raise InputError(f"neurosynth baseline: no term separates the training studies (each is mentioned, at "
                             f"tf-idf >= {self.frequency_threshold}, by all or by none of them)")
        grid = MaskGrid.from_img(self.mask_img_)
        self.term_maps_ = association_z(study_activations(split, self.tfidf_.index, grid), labels)
        self.mask_bool_ = grid.mask_data()
        return terms

    def _fit_nimare(self, split: TrainingSplit) -> list[str]:
        from nimare.decode.continuous import CorrelationDecoder
        from nimare.meta.cbma.mkda import MKDAChi2

        dataset = build_dataset(split, self.tfidf_, FEATURE_GROUP)
        self.decoder_ = CorrelationDecoder(
            feature_group=FEATURE_GROUP,
            frequency_threshold=self.frequency_threshold,
            meta_estimator=MKDAChi2(),
            target_image=self.target_image,
            n_cores=self.n_cores,
        )
        try:
            # voxels that no study of a group reaches give 0/0 in MKDAChi2's conditional
            # probabilities, once per term: NiMARE's expected case, not a problem of the data
            with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                warnings.filterwarnings("ignore", message=".*Dataset is deprecated", category=FutureWarning)
                warnings.filterwarnings("ignore", message=".*arguments of sum will be keyword-only")
                self.decoder_.fit(dataset)
        except ValueError as exc:  # every term is mentioned by all or by none of the studies
            raise InputError(f"neurosynth baseline: no term separates the training studies ({exc})") from exc
        results = self.decoder_.results_
        prefix = f"{FEATURE_GROUP}__"
        terms = [feature[len(prefix) :] for feature in results.maps]
        # CorrelationDecoder.transform masks each map with a NiftiMasker (seconds per map);
        # maps arrive on the mask's grid, so boolean masking gives the same vector at once
        self.mask_bool_ = np.asarray(results.masker.mask_img_.dataobj).astype(bool)
        self.term_maps_ = np.vstack([np.asarray(m, dtype=np.float32) for m in results.maps.values()])
        return terms

    def _scores(self, img: nib.Nifti1Image) -> pd.Series:
        values = np.asarray(img.dataobj, dtype=np.float64)[self.mask_bool_]
        return pd.Series(correlate(values, self.term_maps_, self.moments_), index=self.terms_, dtype=float)
