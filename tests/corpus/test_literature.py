"""Neurosynth / NeuroQuery sources: tiny files in the fetchers' layout, the offline case, real data."""

import gzip
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from niclip_ray.cli.main import run
from niclip_ray.corpus import ingest, load_corpus
from niclip_ray.corpus.ingest import read_source
from niclip_ray.corpus.literature import RELEASES
from niclip_ray.corpus.schema import validate
from niclip_ray.errors import InputError, ParameterError

NS, NQ = RELEASES["neurosynth"].files, RELEASES["neuroquery"].files
TERMS = ["memory", "working memory", "visual", "reward"]


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Every test: NiMARE's download raises at once, so no traffic leaves the machine."""
    from nimare.extract import extract

    def unreachable(url, *args, **kwargs):
        raise ConnectionError(f"network is unreachable (test): {url}")

    monkeypatch.setattr(extract, "urlopen", unreachable)


def _tsv(path, header, rows):
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join("\t".join(map(str, row)) for row in [header, *rows]) + "\n")


@pytest.fixture
def tiny(tmp_path):
    """A NiMARE data directory holding both databases, a few studies each."""
    ns, nq = tmp_path / "neurosynth", tmp_path / "neuroquery"
    ns.mkdir()
    nq.mkdir()
    _tsv(ns / NS[1], ["id", "doi", "space", "title", "authors", "year", "journal"], [
        [101, "10.1/a", "MNI", "Alpha", "A", 2001, "J"],
        [102, "", "TAL", "Beta", "B", 2002, "J"],
        [103, "10.1/c", "UNKNOWN", "Gamma", "C", 2003, "J"],
        [104, "", "MNI", "", "D", 2004, "J"],  # no title, not in NeuroQuery: no text
        [105, "10.1/e", "MNI", "Epsilon", "E", 2005, "J"],
    ])
    _tsv(ns / NS[0], ["id", "table_id", "table_num", "peak_id", "x", "y", "z"], [
        [101, 11, "1.", 1, 10.0, 20.0, 30.0],
        [101, 11, "1.", 2, -10.0, 0.0, 5.0],
        [102, 21, "1.", 3, 30.0, -40.0, 50.0],
        [103, 31, "1.", 4, 1.0, 2.0, 3.0],
        [104, 41, "1.", 5, 5.0, 5.0, 5.0],
        [105, 51, "1.", 6, 1.0, 1.0, 1.0],
        [105, 52, "2.", 7, "abc", 2.0, 2.0],
    ])
    sparse.save_npz(ns / NS[2], sparse.csr_matrix(np.ones((5, 2))))
    (ns / NS[3]).write_text("topic0\ntopic1\n")
    (ns / NS[4]).write_text("topic0\tword\n")
    (ns / NS[5]).write_text(json.dumps({"n_topics": 2}))
    _tsv(nq / NQ[1], ["id", "title"], [[103, "Gamma NQ"], [201, "Delta"], [202, ""]])
    _tsv(nq / NQ[0], ["id", "table_id", "table_name", "x", "y", "z"], [
        [103, "T1", "Table 1", 7.0, 8.0, 9.0],
        [103, "T1", "Table 1", 7.0, 8.0, 10.0],
        [201, "T2", "Table 2", -1.0, -2.0, -3.0],
        [202, "T1", "Table 1", 0.0, 0.0, 0.0],
    ])
    counts = [[2, 2, 0, 1], [1, 0, 3, 1], [0, 0, 0, 0]]  # rows: 103, 201, 202; columns: TERMS
    sparse.save_npz(nq / NQ[2], sparse.csr_matrix(np.array(counts, dtype=float)))
    (nq / NQ[3]).write_text("\n".join(TERMS) + "\n")
    return tmp_path


def _problems(corpus):
    return sorted(zip(corpus.errors["study_id"], corpus.errors["problem"]))


def test_neurosynth_converts_talairach_and_keeps_unknown_as_mni(tiny):
    from nimare.utils import tal2mni

    corpus = validate(read_source("neurosynth", data_dir=tiny))
    studies = corpus.studies.set_index("study_id")
    assert list(studies.index) == ["101", "102", "103", "105"]
    assert (studies["pmid"] == studies.index).all() and set(studies["source"]) == {"neurosynth"}
    assert studies["doi"].to_dict() == {"101": "10.1/a", "102": "", "103": "10.1/c", "105": "10.1/e"}
    assert studies["title"]["103"] == "Gamma" and (studies["keywords"] == "").all()
    assert (studies[["abstract", "body"]] == "").all().all() and set(studies["peaks_from"]) == {"neurosynth"}
    peaks = corpus.coordinates.set_index("study_id")
    assert peaks.loc["102", "space_in"] == "TAL" and peaks.loc["103", "space_in"] == "UNKNOWN"
    np.testing.assert_allclose(peaks.loc["102", ["x", "y", "z"]].to_numpy(float),
                               tal2mni(np.array([[30.0, -40.0, 50.0]]))[0], atol=1e-4)
    assert not np.allclose(peaks.loc["102", ["x", "y", "z"]].to_numpy(float), [30, -40, 50], atol=0.5)
    assert peaks.loc["103", ["x", "y", "z"]].tolist() == [1.0, 2.0, 3.0]
    assert set(corpus.coordinates["analysis_id"]) == {"101-11", "102-21", "103-31", "105-51"}
    assert studies["n_peaks"].to_dict() == {"101": 2, "102": 1, "103": 1, "105": 1}
    assert _problems(corpus) == [("104", "no text"), ("105", "invalid coordinate")]
    detail = corpus.errors.set_index("study_id")["detail"]
    assert detail["104"] == "neither a title nor keywords" and "'abc' is not a number" in detail["105"]


def test_neuroquery_keywords_are_ordered_by_tfidf(tiny):
    corpus = validate(read_source("neuroquery", data_dir=tiny))
    studies = corpus.studies.set_index("study_id")
    # 3 rows; document frequencies memory 2, working memory 1, visual 1, reward 2;
    # smooth idf = ln(4 / (1 + df)) + 1: 1.2877, 1.6931, 1.6931, 1.2877.
    # 103: memory 2 x 1.2877 = 2.58 < working memory 2 x 1.6931 = 3.39; reward 1.29.
    # 201: visual 3 x 1.6931 = 5.08; memory and reward tie at 1.2877 -> vocabulary order.
    assert studies["keywords"].to_dict() == {"103": "working memory, memory, reward", "201": "visual, memory, reward"}
    assert studies["title"].to_dict() == {"103": "Gamma NQ", "201": "Delta"}
    assert (studies["doi"] == "").all() and set(studies["peaks_from"]) == {"neuroquery"}
    assert set(corpus.coordinates["space_in"]) == {"MNI"}
    assert sorted(corpus.coordinates["analysis_id"]) == ["103-T1", "103-T1", "201-T2"]
    assert _problems(corpus) == [("202", "no text")]


def test_union_takes_peaks_of_shared_studies_from_neurosynth(tiny):
    corpus = validate(read_source("neurosynth+neuroquery", data_dir=tiny))
    studies = corpus.studies.set_index("study_id")
    assert list(studies.index) == ["101", "102", "103", "105", "201"]
    assert studies["peaks_from"].to_dict() == {
        "101": "neurosynth", "102": "neurosynth", "103": "neurosynth", "105": "neurosynth", "201": "neuroquery"
    }
    shared = studies.loc["103"]
    assert (shared["title"], shared["doi"], shared["keywords"]) == ("Gamma NQ", "10.1/c", "working memory, memory, reward")
    assert shared["n_peaks"] == 1 and studies["keywords"]["101"] == ""
    peaks = corpus.coordinates[corpus.coordinates["study_id"] == "103"]
    assert peaks[["x", "y", "z"]].to_numpy().tolist() == [[1, 2, 3]] and set(peaks["space_in"]) == {"UNKNOWN"}
    only_nq = corpus.coordinates[corpus.coordinates["study_id"] == "201"]
    assert only_nq[["x", "y", "z"]].to_numpy().tolist() == [[-1, -2, -3]] and set(only_nq["space_in"]) == {"MNI"}
    assert set(corpus.coordinates.loc[corpus.coordinates["study_id"] == "102", "space_in"]) == {"TAL"}
    assert set(studies["source"]) == {"neurosynth+neuroquery"}
    assert _problems(corpus) == [("104", "no text"), ("105", "invalid coordinate"), ("202", "no text")]


def test_ingest_cli_and_info_show_keywords(tiny, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert run(["corpus", "ingest", "neurosynth+neuroquery", "--data-dir", str(tiny), "--out", str(out)]) == 0
    assert "5 studies (0 with abstract, 0 with body, 2 with keywords)" in capsys.readouterr().out
    assert run(["corpus", "info", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("with title", "with keywords", "studies with peaks from neuroquery"):
        assert row in text


def test_data_dir_with_another_source_is_a_parameter_error(tmp_path, capsys):
    with pytest.raises(ParameterError) as info:
        read_source("nimare:nback_vs_flanker", data_dir=tmp_path)
    assert info.value.param == "data_dir"
    args = ["corpus", "ingest", "nimare:nback_vs_flanker", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert run(args) == 1
    assert "--data-dir applies only to SOURCE neurosynth" in capsys.readouterr().err


def test_offline_without_files_names_the_folder_to_seed(tmp_path):
    empty = tmp_path / "empty"
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        ingest("neurosynth+neuroquery", tmp_path / "out", data_dir=empty)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message and "ConnectionError" in message
    assert f"seed {empty / 'neurosynth'} with {', '.join(NS)}" in message
    assert list((empty / "neurosynth").iterdir()) == []  # no empty file left for the next run to trust


def test_an_older_corpus_without_the_new_columns_loads(tmp_path):
    studies = pd.DataFrame({"study_id": ["s1"], "pmid": [""], "title": ["T"], "abstract": ["A"], "body": [""],
                            "source": ["x"], "label": [""], "n_analyses": [1], "n_peaks": [1]})
    studies.to_parquet(tmp_path / "studies.parquet", index=False)
    pd.DataFrame({"study_id": ["s1"], "analysis_id": ["s1"], "x": [0.0], "y": [0.0], "z": [0.0],
                  "space_in": ["MNI"]}).to_parquet(tmp_path / "coordinates.parquet", index=False)
    loaded = load_corpus(tmp_path).studies
    assert loaded[["doi", "keywords", "peaks_from"]].iloc[0].tolist() == ["", "", ""]


def test_title_and_keywords_are_text_sections(tiny, tmp_path):
    from niclip_ray.pipelines.text import text_items

    ingest("neuroquery", tmp_path / "c", data_dir=tiny)
    items = {item["study_id"]: item for item in text_items(tmp_path / "c", "keywords")}
    assert items["201"]["text"] == "visual, memory, reward"
    assert [item["text"] for item in text_items(tmp_path / "c", "title")] == ["Gamma NQ", "Delta"]


# Real data: each source ingested once per module, from a writable copy (the fetchers write).


@pytest.fixture(scope="module")
def real_corpora(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("literature")
    shutil.copytree(real_data / "nimare", root / "nimare")
    return {
        source: ingest(source, root / source.replace("+", "_"), data_dir=root / "nimare")[0]
        for source in ("neurosynth", "neuroquery", "neurosynth+neuroquery")
    }


def test_real_neurosynth(real_corpora):
    corpus = real_corpora["neurosynth"]
    assert (len(corpus.studies), len(corpus.coordinates), len(corpus.errors)) == (14371, 507891, 0)
    spaces = corpus.coordinates["space_in"].value_counts().to_dict()
    assert spaces == {"MNI": 372515, "TAL": 81498, "UNKNOWN": 53878}
    by_study = corpus.coordinates.drop_duplicates("study_id")["space_in"].value_counts().to_dict()
    assert by_study == {"MNI": 10204, "TAL": 2335, "UNKNOWN": 1832}
    assert (corpus.studies["doi"] != "").sum() == 14281 and (corpus.studies["keywords"] == "").all()


def test_real_neuroquery(real_corpora, real_data):
    from sklearn.feature_extraction.text import TfidfTransformer

    corpus = real_corpora["neuroquery"]
    # 16 peaks more than 50 mm outside the MNI box (table misreadings such as y = 148) are dropped
    assert (len(corpus.studies), len(corpus.coordinates), len(corpus.errors)) == (13459, 469260 - 16, 16)
    assert set(corpus.errors["problem"]) == {"invalid coordinate"}
    studies = corpus.studies.set_index("study_id")
    assert (studies["keywords"] != "").sum() == 13366 and (studies["title"] != "").all()
    folder = real_data / "nimare" / "neuroquery"
    counts = sparse.load_npz(folder / NQ[2]).tocsr()
    terms = (folder / NQ[3]).read_text().splitlines()
    ids = pd.read_csv(folder / NQ[1], sep="\t", dtype=str)["id"]
    scores = TfidfTransformer(norm=None, smooth_idf=True).fit_transform(counts).tocsr()
    for row in range(0, 13459, 97):  # scikit-learn's tf-idf as the oracle, on every 97th study
        start, stop = scores.indptr[row], scores.indptr[row + 1]
        ranked = sorted(zip(-scores.data[start:stop], scores.indices[start:stop]))
        assert studies.loc[ids[row], "keywords"] == ", ".join(terms[j] for _, j in ranked)


def test_real_union(real_corpora):
    corpus = real_corpora["neurosynth+neuroquery"]
    assert len(corpus.studies) == 19148  # 6 NeuroQuery peaks far outside the MNI box are dropped, no study
    assert corpus.errors["problem"].tolist() == ["invalid coordinate"] * 6
    assert len(corpus.coordinates) == 660152 - 6
    assert corpus.studies["peaks_from"].value_counts().to_dict() == {"neurosynth": 14371, "neuroquery": 4777}
    assert corpus.coordinates["space_in"].value_counts().to_dict() == {"MNI": 524776 - 6, "TAL": 81498, "UNKNOWN": 53878}
    union = corpus.studies.set_index("study_id")
    neurosynth = real_corpora["neurosynth"].studies.set_index("study_id")
    neuroquery = real_corpora["neuroquery"].studies.set_index("study_id")
    shared = union.index[union.index.isin(neurosynth.index) & union.index.isin(neuroquery.index)]
    assert len(shared) == 8682
    assert (union.loc[union.index.isin(neurosynth.index), "peaks_from"] == "neurosynth").all()
    assert (union.loc[shared, "keywords"] == neuroquery.loc[shared, "keywords"]).all()
    assert (union.loc[shared, "doi"] == neurosynth.loc[shared, "doi"]).all()
