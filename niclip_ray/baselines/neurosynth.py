"""Neurosynth-style baseline: NiMARE's ``CorrelationDecoder`` over MKDA chi-square maps.

For each term, MKDAChi2 compares the training studies whose tf-idf for the term is at
least ``frequency_threshold`` against the other training studies; the decoder keeps the
``z_desc-association`` map. A map is decoded by its Pearson correlation with each term's
map (Yarkoni et al., 2011; Salo et al., 2023), as the reference's ``baseline_train.py``;
the correlation is NiMARE's ``pearson`` on the masked map, as ``CorrelationDecoder.transform``.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.baselines.base import Baseline
from niclip_ray.baselines.dataset import TrainingSplit, build_dataset
from niclip_ray.errors import InputError

FEATURE_GROUP = "terms_tfidf"


class NeurosynthBaseline(Baseline):
    """Correlation decoder on per-term MKDAChi2 association maps.

    Parameters
    ----------
    section : str
        Text section the annotations are counted in (abstract, body or all).
    frequency_threshold : float
        Minimum tf-idf for a study to count as mentioning a term (reference: 0.001).
    target_image : str
        MKDAChi2 map correlated with the input maps (reference: ``z_desc-association``).
    n_cores : int
        Cores NiMARE may use to fit terms in parallel (1 keeps shared machines usable).
    """

    name = "neurosynth"

    def __init__(
        self,
        section: str = "abstract",
        frequency_threshold: float = 0.001,
        target_image: str = "z_desc-association",
        n_cores: int = 1,
    ) -> None:
        super().__init__(section=section)
        self.frequency_threshold = frequency_threshold
        self.target_image = target_image
        self.n_cores = n_cores

    def _fit(self, split: TrainingSplit) -> list[str]:
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
        self.term_maps_ = np.vstack([np.asarray(m, dtype=np.float64) for m in results.maps.values()])
        return terms

    def _scores(self, img: nib.Nifti1Image) -> pd.Series:
        from nimare.stats import pearson

        values = np.asarray(img.dataobj, dtype=np.float64)[self.mask_bool_]
        return pd.Series(pearson(values[None, :], self.term_maps_), index=self.terms_, dtype=float)
