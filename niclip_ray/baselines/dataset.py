"""Training inputs of the baselines: a corpus split, its texts, and a NiMARE Dataset.

NiMARE ids are ``<study_id>-1``: one contrast per study, as in the reference, whose
corpus pools every analysis of a study (the corpus Parquet does the same).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from niclip_ray.corpus import load_corpus
from niclip_ray.corpus.schema import Corpus
from niclip_ray.errors import InputError, ParameterError

#: Text sections a baseline can be annotated from; ``all`` joins title, abstract, body and
#: keywords (NeuroQuery's keyword document, where the corpus has one).
SECTIONS = ("abstract", "body", "all")
#: NiMARE's MNI152 2 mm template, the space of the corpus coordinates.
TEMPLATE = "mni152_2mm"


@dataclass
class TrainingSplit:
    """The training studies of a corpus.

    Attributes
    ----------
    studies : DataFrame
        Corpus ``studies`` rows of the split, indexed by study id, in sorted order.
    coordinates : DataFrame
        Their peaks: ``study_id, x, y, z`` (MNI mm).
    """

    studies: pd.DataFrame
    coordinates: pd.DataFrame

    def texts(self, section: str) -> pd.Series:
        """One text per study (index: study id) from ``section`` (abstract, body or all)."""
        if section not in SECTIONS:
            raise ParameterError("section", f"{section!r} is an unknown text section; expected one of "
                                            f"{', '.join(SECTIONS)}")
        if section == "all":
            columns = [c for c in ("title", "abstract", "body", "keywords") if c in self.studies]
            parts = self.studies[columns].fillna("").astype(str)
            texts = parts.agg("\n".join, axis=1)
        else:
            texts = self.studies[section].fillna("").astype(str)
        if not texts.str.strip().any():
            raise InputError(f"no training study has text in section {section!r}")
        return texts


def load_split(corpus: str | Path | Corpus, train_ids: Sequence[str]) -> TrainingSplit:
    """Select the training studies (and their peaks) of a corpus directory or object.

    Raises
    ------
    InputError
        Empty split, or ids that are not in the corpus.
    """
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    ids = sorted({str(i) for i in train_ids})
    if not ids:
        raise InputError("the training split is empty")
    studies = corpus.studies.set_index("study_id")
    unknown = sorted(set(ids) - set(studies.index))
    if unknown:
        raise InputError(f"{len(unknown)} training id(s) are not in the corpus, e.g. {unknown[:3]}")
    coords = corpus.coordinates[corpus.coordinates["study_id"].isin(ids)]
    without_peaks = sorted(set(ids) - set(coords["study_id"]))
    if without_peaks:
        raise InputError(f"{len(without_peaks)} training study(ies) have no peaks, e.g. {without_peaks[:3]}")
    peaks = coords[["study_id", "x", "y", "z"]].reset_index(drop=True)
    return TrainingSplit(studies=studies.loc[ids], coordinates=peaks)


def nimare_ids(study_ids: Sequence[str]) -> list[str]:
    """NiMARE ids (``<study_id>-1``) of study ids."""
    return [f"{sid}-1" for sid in study_ids]


def build_dataset(split: TrainingSplit, annotations: pd.DataFrame, feature_group: str):
    """A NiMARE Dataset of the split's peaks and texts, with ``annotations`` as one feature group.

    Parameters
    ----------
    split : TrainingSplit
    annotations : DataFrame (n_studies, n_terms)
        Indexed by study id; columns are term names.
    feature_group : str
        Prefix of the annotation columns (``<feature_group>__<term>``).

    Returns
    -------
    nimare.dataset.Dataset
        On NiMARE's MNI152 2 mm template and brain mask; ``texts`` holds title, abstract
        and body.
    """
    from nimare.dataset import Dataset

    source = {}
    for sid, peaks in split.coordinates.groupby("study_id", sort=True):
        coords = {"space": "MNI", **{axis: peaks[axis].astype(float).tolist() for axis in "xyz"}}
        source[sid] = {"contrasts": {"1": {"coords": coords}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NiMARE announces the Dataset -> Studyset move
        dataset = Dataset(source, target=TEMPLATE)
    ids = list(source)
    labels = annotations.loc[ids].copy()
    labels.columns = [f"{feature_group}__{term}" for term in labels.columns]
    dataset.annotations = _with_ids(labels, ids)
    dataset.texts = _with_ids(split.studies.loc[ids, ["title", "abstract", "body"]].astype(str), ids)
    return dataset


def _with_ids(frame: pd.DataFrame, study_ids: list[str]) -> pd.DataFrame:
    """Prefix NiMARE's id columns (id, study_id, contrast_id) to per-study rows."""
    frame = frame.reset_index(drop=True)
    frame.insert(0, "contrast_id", "1")
    frame.insert(0, "study_id", study_ids)
    frame.insert(0, "id", nimare_ids(study_ids))
    return frame
