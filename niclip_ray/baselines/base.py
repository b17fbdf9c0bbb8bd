"""What every baseline shares: fit on a corpus split and a vocabulary, decode maps to tidy rows.

:meth:`Baseline.fit` collects the inputs (the split, the texts of one section, the
whole-phrase annotations of :mod:`niclip_ray.baselines.annotations`) and calls the
subclass's ``_fit``; :meth:`Baseline.decode` puts each map on the template grid, asks the
subclass for one score per term and returns rows in the decode contract, so the evaluator
scores baselines and NiCLIP alike.
"""

from __future__ import annotations

import functools
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.atlas.maps import load_map
from niclip_ray.baselines.annotations import annotate
from niclip_ray.baselines.dataset import TEMPLATE, TrainingSplit, load_split
from niclip_ray.corpus.schema import Corpus
from niclip_ray.decoding.schema import BASELINE_COLUMNS
from niclip_ray.errors import InputError

LOG = logging.getLogger(__name__)
#: The baselines score voxels of the 2 mm template, on no atlas: their rows' ``atlas_id``.
VOXEL_GRID_ID = "voxels-mni152-2mm"

MapSource = str | os.PathLike | nib.Nifti1Image


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Turn tqdm's bars off (``disable=True`` by default) for the body; warnings and errors still show.

    NiMARE draws a bar per fit on stderr (the correlation decoder's, one step per term),
    which the console cannot place among its own lines. It affects every thread while it
    lasts.
    """
    from tqdm import std

    init = vars(std.tqdm)["__init__"]
    std.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init


def template_mask() -> nib.Nifti1Image:
    """NiMARE's MNI152 2 mm brain mask, the grid both baselines work on."""
    from nimare.utils import get_template

    return get_template(TEMPLATE, mask="brain")


def on_grid(img: nib.Nifti1Image, mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """Resample ``img`` to the mask's grid (continuous interpolation); NaN and inf become 0."""
    from nilearn.image import resample_to_img

    if img.shape[:3] != mask.shape[:3] or not np.allclose(img.affine, mask.affine):
        img = resample_to_img(img, mask, interpolation="continuous", copy_header=True, force_resample=True)
    data = np.nan_to_num(np.asarray(img.get_fdata(dtype=np.float32)), nan=0.0, posinf=0.0, neginf=0.0)
    return nib.Nifti1Image(data, mask.affine)


def ranked_rows(map_id: str, source: str, scores: pd.Series, vocabulary: Sequence[str], backend: str) -> pd.DataFrame:
    """One map's scores as ranked decode rows.

    Terms are ranked by descending score (tied scores share the best rank of their group).
    Vocabulary terms without a score (the baseline could not fit them, or the score is NaN)
    follow, all tied at the last rank, so the evaluator counts them at the end of the list.
    """
    scored = scores.dropna().sort_values(ascending=False, kind="stable")
    unscored = [t for t in vocabulary if t not in scored.index]
    ranks = scored.rank(ascending=False, method="min").to_numpy(dtype=np.int64)
    frame = pd.DataFrame(
        {
            "term": [*scored.index, *unscored],
            "rank": np.concatenate([ranks, np.full(len(unscored), len(scored) + 1, dtype=np.int64)]),
            "score": np.concatenate([scored.to_numpy(dtype=np.float64), np.full(len(unscored), np.nan)]),
        }
    )
    return frame.assign(map_id=map_id, source_path=source, level="task", backend=backend, atlas_id=VOXEL_GRID_ID,
                        error=None)


def _error_row(map_id: str, source: str, backend: str, message: str) -> pd.DataFrame:
    return pd.DataFrame([{"map_id": map_id, "source_path": source, "backend": backend, "error": message}])


class Baseline(ABC):
    """A NiMARE baseline trained on a corpus split and a vocabulary of term names.

    Parameters
    ----------
    section : str
        Text section the annotations are counted in: ``abstract``, ``body`` or ``all``.
    """

    #: Backend name written in the ``backend`` column.
    name = "baseline"

    def __init__(self, section: str = "abstract") -> None:
        self.section = section

    def fit(self, corpus: str | Path | Corpus, train_ids: Sequence[str], vocabulary: Sequence[str]) -> Baseline:
        """Annotate the training studies with the vocabulary and fit the model.

        Parameters
        ----------
        corpus : path or Corpus
            A corpus directory (``studies.parquet``, ``coordinates.parquet``) or object.
        train_ids : sequence of str
            Study ids of the training split.
        vocabulary : sequence of str
            Task names; multi-word names are counted as whole phrases.

        Returns
        -------
        self
            With ``counts_`` and ``tfidf_`` (studies × terms) and ``terms_`` (the terms the
            model could fit).
        """
        vocabulary = [str(term) for term in vocabulary]
        if not vocabulary:
            raise InputError("the vocabulary is empty")
        split = load_split(corpus, train_ids)
        self.vocabulary_ = vocabulary
        self.counts_, self.tfidf_ = annotate(split.texts(self.section), vocabulary)
        unmentioned = [t for t in vocabulary if not self.counts_[t].any()]
        if len(unmentioned) == len(vocabulary):
            raise InputError(
                f"no vocabulary term occurs in the {self.section} text of the {len(split.studies)} training studies"
            )
        if unmentioned:
            LOG.warning("%s: %d term(s) never occur in the training texts and rank last: %s", self.name,
                        len(unmentioned), ", ".join(unmentioned[:10]))
        self.mask_img_ = template_mask()
        with no_progress_bars():
            self.terms_ = self._fit(split)
        return self

    def decode(self, maps: Mapping[str, MapSource]) -> pd.DataFrame:
        """Rank the vocabulary for each map.

        Parameters
        ----------
        maps : mapping of map id to a NIfTI path or image
            Maps in MNI space; they are resampled to the 2 mm template grid.

        Returns
        -------
        DataFrame
            :data:`~niclip_ray.decoding.schema.BASELINE_COLUMNS`, one row per map and term
            (level ``task``); a map that cannot be read gets one row with ``error`` set and no term.
        """
        if not hasattr(self, "terms_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit() first")
        frames = []
        for map_id, source in maps.items():
            label = source if not isinstance(source, nib.Nifti1Image) else "in-memory image"
            try:
                img = on_grid(load_map(source, name=str(map_id)), self.mask_img_)
                scores = self._scores(img)
            except InputError as exc:
                frames.append(_error_row(str(map_id), str(label), self.name, str(exc)))
                continue
            frames.append(ranked_rows(str(map_id), str(label), scores, self.vocabulary_, self.name))
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BASELINE_COLUMNS)
        return frame.reindex(columns=BASELINE_COLUMNS)

    @abstractmethod
    def _fit(self, split: TrainingSplit) -> list[str]:
        """Fit on the split (annotations are in ``self.counts_``/``self.tfidf_``); return the fitted terms."""

    @abstractmethod
    def _scores(self, img: nib.Nifti1Image) -> pd.Series:
        """One score per fitted term (higher = better) for a map on the template grid."""
