"""One bad file, row or value costs only what it touches: every valid study is written.

Each fixture is a small pubget or NeuroStore tree with one defect; the tests check the
exact studies kept, the exact error rows, and that each error names its file and line.
"""

import json

import numpy as np
import pandas as pd
import pytest

from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.corpus import ingest, load_corpus
from niclip_ray.errors import InputError

N = 8
LONG_BODY = "word " * 40_000  # 200 kB: beyond the csv module's default 128 KiB field limit


def _text_csv(n=N) -> str:
    """Study 1 has a two-line quoted body, study N a 200 kB one, the others one line each."""
    rows = ['1,abs 1,"body 1\nsecond line"'] + [f"{i},abs {i},body {i}" for i in range(2, n)]
    return "pmcid,abstract,body\n" + "\n".join([*rows, f"{n},abs {n},{LONG_BODY}"]) + "\n"


def pubget(root, text: bytes | None = None, metadata: str | None = None, coordinates: str | None = None):
    """A pubget directory: pmcid i has pmid 1000+i, one peak and a text row (unless replaced)."""
    root.mkdir(parents=True)
    (root / "metadata.csv").write_text(
        metadata or "pmcid,pmid,title\n" + "".join(f"{i},{1000 + i},Title {i}\n" for i in range(1, N + 1)))
    (root / "coordinates.csv").write_text(
        coordinates or "pmcid,table_id,x,y,z\n" + "".join(f"{i},t{i},{i},-{i},{2 * i}\n" for i in range(1, N + 1)))
    (root / "text.csv").write_bytes(_text_csv().encode() if text is None else text)
    return root


def errors_of(corpus) -> list[tuple[str, str, str]]:
    return [tuple(row) for row in corpus.errors[["study_id", "problem", "detail"]].itertuples(index=False)]


def ids(*numbers) -> list[str]:
    return [str(1000 + n) for n in numbers]


def test_the_clean_fixture_keeps_all_studies_with_multiline_and_long_bodies(tmp_path):
    corpus, summary = ingest(str(pubget(tmp_path / "src")), tmp_path / "out")
    assert (summary.n_studies, summary.n_peaks, summary.n_errors) == (8, 8, 0)
    bodies = corpus.studies.set_index("study_id")["body"]
    assert bodies["1001"] == "body 1\nsecond line"
    assert bodies["1008"] == LONG_BODY.strip()


def test_one_non_utf8_byte_in_text_csv_costs_one_study(tmp_path):
    text = _text_csv().encode().replace(b"abs 3", b"abs \xff3")
    corpus, summary = ingest(str(pubget(tmp_path / "src", text=text)), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ids(1, 2, 4, 5, 6, 7, 8)
    assert (summary.n_studies, summary.n_peaks) == (7, 7)
    assert errors_of(corpus) == [
        ("1003", "text is not UTF-8", "text.csv line 5: not UTF-8 (byte 0xff at column 7)"),
        ("1003", "no text", "neither an abstract nor a body"),
    ]


def test_an_unterminated_quote_costs_only_its_row(tmp_path):
    text = _text_csv().replace("3,abs 3,", '3,"abs 3,').encode()
    corpus, _ = ingest(str(pubget(tmp_path / "src", text=text)), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ids(1, 2, 4, 5, 6, 7, 8)
    assert corpus.studies.set_index("study_id").loc["1004", "body"] == "body 4"
    assert errors_of(corpus) == [
        ("1003", "unterminated quote", ("text.csv line 5: a quote opened here does not close where it should; "
                                        "the lines after it were read again as rows")),
        ("1003", "no text", "neither an abstract nor a body"),
    ]


def test_an_empty_optional_text_csv_is_one_error_and_studies_keep_other_text(tmp_path):
    metadata = "pmcid,pmid,title,abstract\n" + "".join(f"{i},{1000 + i},T{i},abs {i}\n" for i in range(1, N + 1))
    src = pubget(tmp_path / "src", text=b"", metadata=metadata)
    corpus, summary = ingest(str(src), tmp_path / "out")
    assert (summary.n_studies, summary.n_with_abstract, summary.n_with_body) == (8, 8, 0)
    assert errors_of(corpus) == [("?", "unreadable text.csv", f"{src / 'text.csv'} is empty (no header line)")]


def test_neurostore_metadata_holding_a_list_is_an_error_row(tmp_path):
    root = tmp_path / "ns"
    for pmid in ("101", "102", "103"):
        folder = root / pmid / "processed" / "pubget"
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps({"title": f"t{pmid}", "abstract": f"a{pmid}"}))
        (folder / "coordinates.csv").write_text("x,y,z\n1,2,3\n")
    (root / "102" / "processed" / "pubget" / "metadata.json").write_text("[1, 2]")
    (root / "102" / "processed" / "pubget" / "text.txt").write_text("body 102")
    corpus, _ = ingest(str(root), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ["101", "102", "103"]
    assert corpus.studies["title"].tolist() == ["t101", "", "t103"]
    path = root / "102" / "processed" / "pubget" / "metadata.json"
    assert errors_of(corpus) == [("102", "malformed metadata.json", f"{path}: expected an object, got a JSON list")]


def test_a_duplicate_pmid_is_dropped_with_its_peaks(tmp_path):
    src = pubget(
        tmp_path / "src",
        metadata="pmcid,pmid,title\n1011,11111,First\n1012,11111,Second\n1013,22222,Third\n",
        text=b"pmcid,abstract\n1011,abs a\n1012,abs b\n1013,abs c\n",
        coordinates="pmcid,table_id,x,y,z\n1011,t1,1,2,3\n1011,t2,4,5,6\n1012,t1,7,8,9\n1013,t1,0,0,0\n",
    )
    corpus, summary = ingest(str(src), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ["11111", "22222"]
    assert corpus.studies.set_index("study_id").loc["11111", "abstract"] == "abs a"
    coords = corpus.coordinates
    assert coords.loc[coords["study_id"] == "11111", "analysis_id"].tolist() == ["1011-t1", "1011-t2"]
    assert (summary.n_peaks, corpus.studies["n_peaks"].tolist()) == (3, [2, 1])
    assert errors_of(corpus) == [
        ("11111", "duplicate study id", "kept the first occurrence (pmcid 1011); dropped pmcid 1012 with its 1 peak(s)")
    ]


def test_bad_coordinates_quote_the_source_and_name_the_line(tmp_path):
    coordinates = ("pmcid,table_id,x,y,z\n1,t1,abc,2,3\n2,t1,1e300,2,3\n2,t1,1,2,3\n3,t1,1,2\n3,t1,1,2,3,4\n"
                   + "".join(f"{i},t{i},1,2,3\n" for i in range(3, N + 1)))
    corpus, summary = ingest(str(pubget(tmp_path / "src", coordinates=coordinates)), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ids(2, 3, 4, 5, 6, 7, 8)
    assert (summary.n_peaks, corpus.studies["n_peaks"].tolist()) == (7, [1, 1, 1, 1, 1, 1, 1])
    assert errors_of(corpus) == [
        ("1003", "malformed CSV row", "coordinates.csv line 6: 6 fields, the header has 5: 3,t1,1,2,3,4"),
        ("1001", "invalid coordinate", "analysis 1-t1: (abc, 2, 3): x 'abc' is not a number"),
        ("1002", "invalid coordinate", "analysis 2-t1: (1e300, 2, 3): x 1e300 is beyond float32 (|value| > 3.4e38)"),
        ("1003", "invalid coordinate", "analysis 3-t1: (1, 2, missing): z is missing"),
        ("1001", "no peaks", "no valid coordinates"),
    ]
    stored = load_corpus(tmp_path / "out").coordinates
    assert stored["x"].dtype == np.float32 and np.isfinite(stored[["x", "y", "z"]].to_numpy()).all()


def test_dataset_json_reports_values_as_written(tmp_path):
    src = tmp_path / "dset.json"
    src.write_text(json.dumps({"s1": {"contrasts": {"1": {
        "coords": {"space": "MNI", "x": [None, 2, 3.5], "y": [3, "abc", 1], "z": [5, 6, 7]},
        "text": {"abstract": "a"}}}}}))
    corpus, _ = ingest(str(src), tmp_path / "out")
    assert corpus.coordinates[["x", "y", "z"]].to_numpy().tolist() == [[3.5, 1.0, 7.0]]
    assert errors_of(corpus) == [
        ("s1", "invalid coordinate", "analysis s1-1: (missing, 3, 5): x is missing"),
        ("s1", "invalid coordinate", "analysis s1-1: (2.0, abc, 6): y 'abc' is not a number"),
    ]


@pytest.fixture
def empty_corpus(tmp_path):
    src = pubget(tmp_path / "src", text=b"pmcid,abstract\n")
    return src, tmp_path / "out"


def test_a_corpus_without_valid_studies_is_an_error(empty_corpus):
    src, out = empty_corpus
    with pytest.raises(InputError) as info:
        ingest(str(src), out)
    assert str(info.value) == f"no valid study in {src} (8 x no text); every problem is listed in {out / 'errors.parquet'}"
    assert len(pd.read_parquet(out / "errors.parquet")) == 8


def test_cli_ingest_and_embed_images_exit_non_zero_on_an_empty_corpus(ray_local, empty_corpus, tmp_path, capsys):
    src, out = empty_corpus
    assert run(["corpus", "ingest", str(src), "--out", str(out)]) == 1
    assert "no valid study in" in capsys.readouterr().err
    assert run(["corpus", "info", str(out)]) == 0
    capsys.readouterr()
    build_standin(default_standin_dir(0), 64, seed=0)
    argv = ["embed", "images", "--corpus", str(out), "--out", str(tmp_path / "images"), "--dim", "64",
            "--atlas-dir", str(default_standin_dir(0)), "--standin"]
    assert run(argv) == 1
    assert f"corpus {out} holds no study (8 problems listed in {out / 'errors.parquet'})" in capsys.readouterr().err


def test_coordinates_beyond_float32_or_far_outside_the_mni_box_are_dropped_on_both_sides(tmp_path):
    coordinates = ("pmcid,table_id,x,y,z\n1,t1,-1e30,2,3\n2,t1,1,1e30,3\n3,t1,1e39,2,-1e39\n4,t1,36,148,-34\n"
                   "5,t1,140,-176,-122\n5,t2,140.1,2,3\n"  # the limits themselves (50 mm out) are kept
                   + "".join(f"{i},t{i}b,1,2,3\n" for i in range(1, N + 1)))
    corpus, summary = ingest(str(pubget(tmp_path / "src", coordinates=coordinates)), tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ids(*range(1, N + 1))  # each keeps its good peak
    assert summary.n_peaks == N + 1
    out_of_box = "is more than 50 mm outside the MNI152 box"
    assert errors_of(corpus) == [  # before: -1e30 and 1e30 were kept as peaks
        ("1001", "invalid coordinate", f"analysis 1-t1: (-1e30, 2, 3): x -1e30 {out_of_box} (x -90 to 90 mm)"),
        ("1002", "invalid coordinate", f"analysis 2-t1: (1, 1e30, 3): y 1e30 {out_of_box} (y -126 to 90 mm)"),
        ("1003", "invalid coordinate", "analysis 3-t1: (1e39, 2, -1e39): x 1e39 is beyond float32 (|value| > 3.4e38); "
                                       "z -1e39 is beyond float32 (|value| > 3.4e38)"),
        ("1004", "invalid coordinate", f"analysis 4-t1: (36, 148, -34): y 148 {out_of_box} (y -126 to 90 mm)"),
        ("1005", "invalid coordinate", f"analysis 5-t2: (140.1, 2, 3): x 140.1 {out_of_box} (x -90 to 90 mm)"),
    ]
    kept = corpus.coordinates.set_index("analysis_id")
    assert kept.loc["5-t1", ["x", "y", "z"]].tolist() == [140.0, -176.0, -122.0]


def test_control_characters_in_ids_drop_the_study_and_are_printed_escaped(tmp_path, capsys):
    metadata = ("pmcid,pmid,title\n" + "".join(f"{i},{1000 + i},Title {i}\n" for i in range(1, N + 1))
                ).replace("1002,", "2\x0022,").replace("1005,", "10\x1b[2J05,")
    coordinates = ("pmcid,table_id,x,y,z\n" + "".join(f"{i},t{i},{i},-{i},{2 * i}\n" for i in range(1, N + 1))
                   + "3,t\u202e9,1,2,3\n")
    src = pubget(tmp_path / "src", metadata=metadata, coordinates=coordinates)
    assert run(["corpus", "ingest", str(src), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().err
    assert "\x00" not in printed and "\x1b" not in printed and "\u202e" not in printed  # before: raw on stderr
    assert "warning: study 2\\x0022: invalid study id (the id holds the control character(s) \\x00; the study " \
           "is dropped with its 1 peak(s))" in printed
    corpus = load_corpus(tmp_path / "out")
    assert corpus.studies["study_id"].tolist() == ids(1, 3, 4, 6, 7, 8)  # before: '2\x0022' was a study
    assert errors_of(corpus) == [
        ("2\\x0022", "invalid study id", "the id holds the control character(s) \\x00; the study is dropped with "
                                        "its 1 peak(s)"),
        ("10\\x1b[2J05", "invalid study id", "the id holds the control character(s) \\x1b; the study is dropped "
                                            "with its 1 peak(s)"),
        ("1003", "invalid analysis id", "analysis 3-t\\u202e9 holds the control character(s) \\u202e; its peak is "
                                        "dropped"),
    ]
    assert corpus.coordinates["analysis_id"].tolist() == ["1-t1", "3-t3", "4-t4", "6-t6", "7-t7", "8-t8"]
