"""Corpus readers on real shipped data, and every bad-input case on fixtures built here."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from niclip_ray.corpus import ingest, load_corpus
from niclip_ray.corpus.ingest import read_source
from niclip_ray.errors import InputError


@pytest.fixture(scope="module")
def nback(tmp_path_factory):
    out = tmp_path_factory.mktemp("nback")
    corpus, summary = ingest("nimare:nback_vs_flanker", out)
    return out, corpus, summary


def test_nback_vs_flanker_counts(nback):
    out, corpus, summary = nback
    assert summary.n_studies == 320 and summary.n_with_abstract == 320
    # one peak, (92, 144, 116), lies 54 mm in front of the MNI box (a table misreading) and is dropped
    assert summary.n_peaks == 9492 - 1 and summary.n_errors == 1
    assert corpus.errors["problem"].tolist() == ["invalid coordinate"] and "y 144.0" in corpus.errors["detail"][0]
    studies = pd.read_parquet(out / "studies.parquet")
    assert studies["study_id"].is_unique and studies["study_id"].is_monotonic_increasing
    assert studies["label"].value_counts().to_dict() == {"n-back": 205, "flanker": 115}
    assert studies["n_peaks"].sum() == 9492 - 1
    assert (studies["abstract"].str.len() > 100).all()


def test_nback_abstracts_are_joined_from_the_studies_table(nback):
    from nimare.utils import get_resource_path

    out, corpus, _ = nback
    raw = pd.read_parquet(f"{get_resource_path()}/nback_vs_flanker_studyset_2026-07/studies.parquet")
    expected = raw.set_index("study_id")["description"].str.strip()
    got = corpus.studies.set_index("study_id")["abstract"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, check_dtype=False)


def test_talairach_peaks_are_converted_with_nimare(nback):
    from nimare.utils import get_resource_path, tal2mni

    _, corpus, _ = nback
    raw = pd.read_parquet(f"{get_resource_path()}/nback_vs_flanker_studyset_2026-07/coordinates.parquet")
    tal = raw[raw["space"] == "TAL"].sort_values(["id", "x", "y", "z"]).reset_index(drop=True)
    got = corpus.coordinates[corpus.coordinates["space_in"] == "TAL"]
    assert len(got) == len(tal) == 1159
    expected = tal2mni(tal[["x", "y", "z"]].to_numpy(float))
    got_sorted = np.sort(got[["x", "y", "z"]].to_numpy(float), axis=0)
    np.testing.assert_allclose(got_sorted, np.sort(expected, axis=0), atol=1e-4)
    mni = corpus.coordinates[corpus.coordinates["space_in"] == "MNI"]
    raw_mni = raw[(raw["space"] == "MNI") & (raw["y"] != 144.0)]  # less the peak outside the MNI box
    np.testing.assert_allclose(np.sort(mni["x"].to_numpy()), np.sort(raw_mni["x"].to_numpy()), atol=1e-5)


def test_neurosynth_laird_dataset_json(tmp_path):
    corpus, summary = ingest("nimare:neurosynth_laird", tmp_path)
    assert (summary.n_studies, summary.n_peaks, summary.n_with_abstract) == (17, 1117, 17)
    assert (corpus.studies["pmid"] == corpus.studies["study_id"]).all()
    assert load_corpus(tmp_path).studies.shape[0] == 17


def _dataset_json(path, studies):
    path.write_text(json.dumps(studies))
    return path


def test_dataset_json_bad_inputs_are_reported_and_good_studies_kept(tmp_path):
    src = _dataset_json(
        tmp_path / "dset.json",
        {
            "good": {"metadata": {"title": "t"}, "contrasts": {"1": {
                "coords": {"space": "MNI", "x": [1, 2], "y": [3, 4], "z": [5, 6]}, "text": {"abstract": "a"}}}},
            "nan": {"contrasts": {"1": {
                "coords": {"space": "MNI", "x": [None, 2], "y": [3, "abc"], "z": [5, 6]}, "text": {"abstract": "b"}}}},
            "notext": {"contrasts": {"1": {"coords": {"space": "MNI", "x": [1], "y": [1], "z": [1]}, "text": {}}}},
            "nopeaks": {"contrasts": {"1": {"coords": {"space": "MNI", "x": [], "y": [], "z": []},
                                           "text": {"abstract": "c"}}}},
            "ragged": {"contrasts": {"1": {"coords": {"x": [1, 2], "y": [1], "z": [1]}, "text": {"abstract": "d"}}}},
            "broken": "not a study",
        },
    )
    corpus, summary = ingest(str(src), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ["good"]
    assert len(corpus.coordinates) == 2
    problems = pd.read_parquet(tmp_path / "out" / "errors.parquet")
    by_study = problems.groupby("study_id")["problem"].apply(set).to_dict()
    assert by_study["nan"] == {"invalid coordinate", "no peaks"}
    assert by_study["notext"] == {"no text"}
    assert by_study["nopeaks"] == {"no peaks"}
    assert "malformed coordinates" in by_study["ragged"]
    assert by_study["broken"] == {"malformed study"}
    assert summary.n_errors == len(problems)


def test_pickle_needs_allow_pickle(tmp_path):
    path = tmp_path / "dset.pkl.gz"
    path.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(InputError, match="--allow-pickle"):
        read_source(str(path))


def test_pickled_nimare_dataset_with_allow_pickle(tmp_path):
    from nimare.dataset import Dataset
    from nimare.utils import get_resource_path

    dset = Dataset(f"{get_resource_path()}/neurosynth_laird_studies.json")
    dset.save(str(tmp_path / "dset.pkl.gz"))
    corpus, summary = ingest(str(tmp_path / "dset.pkl.gz"), tmp_path / "out", allow_pickle=True)
    assert (summary.n_studies, summary.n_peaks) == (17, 1117)
    assert set(corpus.coordinates["space_in"]) == {"mni152_2mm"}


def _pubget(root):
    root.mkdir(parents=True)
    (root / "metadata.csv").write_text("pmcid,pmid,title\n1,111,First\n2,,Second\n3,333,Third\n3,333,Third again\n")
    (root / "text.csv").write_text(
        'pmcid,title,keywords,abstract,body\n1,First,k,"abs one","body one"\n2,Second,k,"abs two",""\n'
        '3,Third,k,"abs three","body three"\n'
    )
    (root / "coordinates.csv").write_text(
        "pmcid,table_id,table_label,x,y,z\n1,t1,T1,10,20,30\n1,t1,T1,-10,-20,oops\n2,t2,T2,0,0,0\n"
        "2,t2,T2,1,2,3,4,5\n3,t3,T3,5,5,5\n9,t9,T9,1,1,1\n"
    )


def test_pubget_reader(tmp_path):
    _pubget(tmp_path / "pubget")
    corpus, _ = ingest(str(tmp_path / "pubget"), tmp_path / "out")
    studies = corpus.studies.set_index("study_id")
    assert sorted(studies.index) == ["111", "333", "PMC2"]
    assert studies.loc["111", "body"] == "body one" and studies.loc["PMC2", "abstract"] == "abs two"
    assert corpus.coordinates.groupby("study_id").size().to_dict() == {"111": 1, "333": 1, "PMC2": 1}
    problems = set(corpus.errors["problem"])
    assert {"invalid coordinate", "malformed CSV row", "duplicate study id", "peaks without a study"} <= problems


def test_pubget_subdirectory_is_found(tmp_path):
    _pubget(tmp_path / "run" / "subset_allArticles_extractedData")
    corpus, _ = ingest(str(tmp_path / "run"), tmp_path / "out")
    assert len(corpus.studies) == 3


def _neurostore(root):
    for pmid, extractors in {"100": ["pubget", "ace"], "200": ["ace"], "300": ["pubget"]}.items():
        for extractor in extractors:
            folder = root / pmid / "processed" / extractor
            folder.mkdir(parents=True)
            (folder / "metadata.json").write_text(json.dumps({"title": f"{pmid} {extractor}", "abstract": "abs"}))
            (folder / "text.txt").write_text(f"body of {pmid} from {extractor}")
            (folder / "coordinates.csv").write_text("x,y,z\n1,2,3\n4,5,6\n")
    (root / "300" / "processed" / "pubget" / "text.txt").write_bytes(b"\xff\xfe bad bytes")
    (root / "300" / "processed" / "pubget" / "metadata.json").write_text("{}")
    tal = root / "400" / "processed" / "pubget"
    tal.mkdir(parents=True)
    (tal / "text.txt").write_text("tal body")
    (tal / "coordinates.csv").write_text("x,y,z,space\n-30,20,6,TAL\n")
    (root / "500" / "processed").mkdir(parents=True)


def test_neurostore_tree(tmp_path):
    _neurostore(tmp_path / "ns")
    corpus, _ = ingest(str(tmp_path / "ns"), tmp_path / "out")
    studies = corpus.studies.set_index("study_id")
    assert sorted(studies.index) == ["100", "200", "400"]
    assert studies.loc["100", "body"] == "body of 100 from pubget"  # pubget preferred over ace
    assert studies.loc["200", "title"] == "200 ace"
    tal = corpus.coordinates[corpus.coordinates["study_id"] == "400"]
    np.testing.assert_allclose(tal[["x", "y", "z"]].to_numpy()[0], [-31.009, 22.638, 1.081], atol=1e-2)
    problems = corpus.errors.groupby("study_id")["problem"].apply(set).to_dict()
    assert problems["300"] == {"text is not UTF-8", "no text"}
    assert problems["500"] == {"no extraction"}


def test_unknown_and_missing_sources(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_source(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="unknown shipped dataset"):
        read_source("nimare:nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a recognised corpus"):
        read_source(str(tmp_path / "empty"))
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(InputError, match="unsupported corpus file"):
        read_source(str(tmp_path / "x.csv"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        read_source(str(tmp_path / "bad.json"))


def test_pubget_missing_column_names_the_file(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "metadata.csv").write_text("pmcid\n1\n")
    (root / "coordinates.csv").write_text("pmcid,x,y\n1,2,3\n")
    with pytest.raises(InputError, match="coordinates.csv lacks column"):
        read_source(str(root))


def test_load_corpus_rejects_other_dirs(tmp_path):
    with pytest.raises(InputError, match="not a corpus directory"):
        load_corpus(tmp_path)
