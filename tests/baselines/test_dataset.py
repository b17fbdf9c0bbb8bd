"""The NiMARE Dataset built from corpus Parquet: peaks, texts and annotations per study."""

import pandas as pd
import pytest

from niclip_ray.baselines.annotations import annotate
from niclip_ray.baselines.dataset import build_dataset, load_split
from niclip_ray.errors import InputError


def test_dataset_holds_the_split_peaks_texts_and_annotations(nback_flanker, tiny_split):
    corpus = nback_flanker[1]
    ids = tiny_split[0][:5]
    split = load_split(corpus, ids)
    counts, tfidf = annotate(split.texts("abstract"), ["n-back", "flanker"])
    dataset = build_dataset(split, tfidf, "terms")
    assert list(dataset.ids) == [f"{sid}-1" for sid in sorted(ids)]
    peaks = corpus.coordinates[corpus.coordinates["study_id"].isin(ids)]
    assert len(dataset.coordinates) == len(peaks)
    first = peaks[peaks["study_id"] == sorted(ids)[0]][["x", "y", "z"]].to_numpy(float)
    got = dataset.coordinates[dataset.coordinates["study_id"] == sorted(ids)[0]][["x", "y", "z"]].to_numpy(float)
    assert (got == first).all()
    abstracts = corpus.studies.set_index("study_id").loc[sorted(ids), "abstract"].tolist()
    assert dataset.texts["abstract"].tolist() == abstracts
    assert list(dataset.annotations.columns) == ["id", "study_id", "contrast_id", "terms__n-back", "terms__flanker"]
    mentioning = dataset.get_studies_by_label(["terms__n-back"], 0.001)
    assert 0 < len(mentioning) < len(ids)  # n-back studies, not all of whose abstracts name it
    assert mentioning == [f"{sid}-1" for sid in counts.index[counts["n-back"] > 0]]


def test_split_errors(nback_flanker):
    corpus = nback_flanker[1]
    with pytest.raises(InputError, match="empty"):
        load_split(corpus, [])
    split = load_split(corpus, corpus.studies["study_id"][:3])
    with pytest.raises(InputError, match="no training study has text in section 'body'"):
        split.texts("body")
    assert isinstance(split.texts("all"), pd.Series)
