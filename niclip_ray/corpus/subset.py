"""Seeded, label-balanced subsets of a corpus (the demo's quick mode)."""

from __future__ import annotations

import numpy as np

from niclip_ray.corpus.schema import Corpus


def subset_studies(corpus: Corpus, n: int, seed: int) -> Corpus:
    """A seeded subset of ``n`` studies, balanced across labels as far as they allow."""
    studies = corpus.studies
    if n >= len(studies):
        return corpus
    rng = np.random.default_rng(seed)
    groups = {label: frame.index.to_numpy() for label, frame in studies.groupby("label")}
    per_label = max(1, n // len(groups))
    keep = np.concatenate([rng.permutation(idx)[:per_label] for idx in groups.values()])
    kept = studies.loc[np.sort(keep)].reset_index(drop=True)
    ids = set(kept["study_id"])
    coords = corpus.coordinates[corpus.coordinates["study_id"].isin(ids)].reset_index(drop=True)
    return Corpus(kept, coords, corpus.errors)


def drop_studies(corpus: Corpus, study_ids) -> Corpus:
    """``corpus`` without the studies ``study_ids`` (and their peaks); errors are kept."""
    drop = set(map(str, study_ids))
    studies = corpus.studies[~corpus.studies["study_id"].isin(drop)].reset_index(drop=True)
    coords = corpus.coordinates[~corpus.coordinates["study_id"].isin(drop)].reset_index(drop=True)
    return Corpus(studies, coords, corpus.errors)
