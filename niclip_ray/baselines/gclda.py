"""GC-LDA baseline: NiMARE's ``GCLDAModel`` topic model, decoded with ``gclda_decode_map``.

The model learns topics that are joint distributions over the vocabulary's term counts and
spatial Gaussians over the peaks (Rubin et al., 2017). A map is decoded as
τ = p(topic | voxel)ᵀ · map and term weights = p(term | topic) · τ. The reference used
25 topics, 4 symmetric regions and 1,000 iterations on ~20k studies; smaller corpora need
fewer topics (fewer than the training studies). Gibbs sampling grows with the peaks, so a
large corpus can be fitted on a seeded subsample of its training studies (``max_studies``).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.baselines.base import Baseline
from niclip_ray.baselines.dataset import TrainingSplit
from niclip_ray.errors import ParameterError


class GCLDABaseline(Baseline):
    """GC-LDA topic model over the vocabulary's phrase counts and the peaks.

    Parameters
    ----------
    section : str
        Text section the counts come from (abstract, body or all).
    n_topics, n_regions : int
        Topics, and spatial subregions per topic (reference: 25 and 4).
    symmetric : bool
        Mirror subregions across hemispheres (needs an even ``n_regions``).
    n_iters : int
        Gibbs sampling iterations (reference: 1,000).
    loglikely_freq : int
        Iterations between log-likelihood evaluations.
    seed : int
        ``seed_init`` of the model and the seed of the subsample; the same seed and data give
        the same model.
    max_studies : int, optional
        Fit on at most this many training studies, drawn at random with ``seed`` (None: all).

    Attributes
    ----------
    study_ids_ : list of str
        The training studies the model was fitted on (sorted).
    n_studies_ : int
        How many (``max_studies`` or all the training studies, whichever is fewer).
    """

    name = "gclda"

    def __init__(
        self,
        section: str = "abstract",
        n_topics: int = 25,
        n_regions: int = 4,
        symmetric: bool = True,
        n_iters: int = 1000,
        loglikely_freq: int = 10,
        seed: int = 1,
        max_studies: int | None = None,
    ) -> None:
        super().__init__(section=section)
        self.n_topics = n_topics
        self.n_regions = n_regions
        self.symmetric = symmetric
        self.n_iters = n_iters
        self.loglikely_freq = loglikely_freq
        self.seed = seed
        self.max_studies = max_studies

    def _subsample(self, study_ids: pd.Index) -> list[str]:
        """The training studies to fit on: all, or ``max_studies`` of them drawn with ``seed``."""
        if self.max_studies is not None and self.max_studies < 1:
            raise ParameterError("max_studies", f"of the gclda baseline must be at least 1, got {self.max_studies}")
        if self.max_studies is None or self.max_studies >= len(study_ids):
            return sorted(study_ids)
        chosen = np.random.default_rng(self.seed).choice(len(study_ids), size=self.max_studies, replace=False)
        return sorted(study_ids[chosen])

    def _fit(self, split: TrainingSplit) -> list[str]:
        from nimare.annotate.gclda import GCLDAModel

        self.study_ids_ = self._subsample(self.counts_.index)
        self.n_studies_ = n_studies = len(self.study_ids_)
        if not 1 <= self.n_topics < n_studies:
            raise ParameterError("n_topics", f"of the gclda baseline must be between 1 and the {n_studies} training "
                                             f"studies - 1, got {self.n_topics}")
        if self.symmetric and self.n_regions % 2:
            raise ParameterError("n_regions", f"of a symmetric gclda baseline must be even, got {self.n_regions}")
        if self.n_iters < 1:
            raise ParameterError("n_iters", f"of the gclda baseline must be at least 1, got {self.n_iters}")
        coordinates = split.coordinates[split.coordinates["study_id"].isin(self.study_ids_)]
        self.model_ = GCLDAModel(
            self.counts_.loc[self.study_ids_],
            coordinates.rename(columns={"study_id": "id"}),
            mask=self.mask_img_,
            n_topics=self.n_topics,
            n_regions=self.n_regions,
            symmetric=self.symmetric,
            seed_init=self.seed,
        )
        self.model_.fit(n_iters=self.n_iters, loglikely_freq=self.loglikely_freq)
        # NiMARE's gclda_decode_map masks each map with nilearn (seconds per map); maps arrive
        # on the mask's grid, so boolean masking and two products give its weights at once
        self.mask_bool_ = np.asarray(self.model_.mask.dataobj).astype(bool)
        self.p_topic_g_voxel_ = np.asarray(self.model_.p_topic_g_voxel_, dtype=np.float64)
        self.p_word_g_topic_ = np.asarray(self.model_.p_word_g_topic_, dtype=np.float64)
        return list(self.model_.vocabulary)

    def _scores(self, img: nib.Nifti1Image) -> pd.Series:
        """NiMARE's ``gclda_decode_map``: word weights p(w|t) · (p(t|v)ᵀ · map)."""
        values = np.asarray(img.dataobj, dtype=np.float32)[self.mask_bool_].astype(np.float64)
        weights = self.p_word_g_topic_ @ (self.p_topic_g_voxel_.T @ values)
        return pd.Series(weights, index=self.terms_, dtype=float)
