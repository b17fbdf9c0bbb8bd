"""The Cognitive Atlas JSON export as an ontology source: a hand-made export, then the real one."""

import json

import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.ontology import DOMAINS, load_ontology, save_ontology
from niclip_ray.ontology.core import read_native
from niclip_ray.ontology.export import is_export_dir, read_export_dir

CONCEPTS = [
    {"id": "trm_wm", "name": "working memory", "definition_text": "hold", "id_concept_class": "ctp_C5",
     "measured_by": ["cnt_nb"]},
    {"id": "trm_rc", "name": "response conflict", "definition_text": "compete", "id_concept_class": "ctp_C4"},
    {"id": "trm_sa", "name": "selective attention", "definition_text": "filter", "id_concept_class": "ctp_C2"},
    {"id": "trm_mc", "name": "motor control", "definition_text": "move", "id_concept_class": "",
     "measured_by": ["cnt_tap"]},
    {"id": "trm_up", "name": "updating", "definition_text": "replace"},
]
TASKS = [
    # trm_fl is a task and trm_gone nothing: neither is a concept
    {"id": "tsk_nb", "name": "n-back task", "definition_text": "remember n back",
     "asserts": ["trm_wm", "trm_fl", "trm_gone"], "has_contrast": ["cnt_nb"]},
    {"id": "trm_undef", "name": "undefined task", "definition_text": "", "asserts": ["trm_rc"]},
    {"id": "trm_fl", "name": "Eriksen flanker task", "definition_text": "respond to the centre",
     "asserts": ["trm_rc"], "has_contrast": ["cnt_fl"]},
    {"id": "trm_tap", "name": "finger tapping task", "definition_text": "tap", "has_contrast": "cnt_tap"},
    {"id": "trm_ob", "name": "object n-back", "definition_text": "remember objects"},
    {"id": "trm_dup", "name": " N-Back  Task", "definition_text": "again", "asserts": ["trm_sa"]},
]
ASSERTIONS = [
    {"id": "ass_1", "name": "updating is measured by the contrast of 2-back in the n-back task",
     "subject": ["trm_up"], "predicate": ["tsk_nb"], "predicate_def": ["cnt_nb"], "truth_value": "positive"},
    {"id": "ass_2", "name": "selective attention is measured by the contrast of incongruent in the flanker",
     "subject": ["trm_sa"], "predicate": ["trm_fl"], "predicate_def": ["cnt_fl"], "truth_value": "positive"},
    {"id": "ass_3", "name": "working memory is measured by the contrast of incongruent in the flanker",
     "subject": ["trm_wm"], "predicate": ["trm_fl"], "predicate_def": ["cnt_fl"], "truth_value": "negative"},
    {"id": "ass_4", "name": "working memory is a kind of memory", "subject": ["trm_wm"], "predicate": ["trm_rc"]},
]
CONTRASTS = [{"id": k, "name": k} for k in ("cnt_nb", "cnt_fl", "cnt_tap")]
CLASS_NAMES = {**DOMAINS, "ctp_C4": "Executive/Cognitive Control"}
# by hand: asserts (wm; rc), the concepts' measured_by (cnt_nb -> wm, cnt_tap -> motor control),
# the positive assertions (cnt_nb -> updating, cnt_fl -> selective attention); task order, then concept order
LINKS = [
    ("n-back task", "working memory"), ("n-back task", "updating"),
    ("Eriksen flanker task", "response conflict"), ("Eriksen flanker task", "selective attention"),
    ("finger tapping task", "motor control"),
]


def write_export(directory, **overrides):
    collections = {
        "TaskCollection.json": TASKS,
        "ConceptCollection.json": CONCEPTS,
        "ConceptClassCollection.json": [{"id": k, "name": v} for k, v in CLASS_NAMES.items()],
        "AssertionCollection.json": ASSERTIONS,
        "ContrastCollection.json": CONTRASTS,
    }
    for name, entries in collections.items():
        (directory / name).write_text(json.dumps({"entries": entries, "@type": name}))
    for name, text in overrides.items():
        (directory / name).write_text(text)
    return directory


def named_links(onto):
    t = dict(zip(onto.tasks["task_id"], onto.tasks["name"]))
    c = dict(zip(onto.concepts["concept_id"], onto.concepts["name"]))
    return [(t[a], c[b]) for a, b in zip(onto.task_concepts["task_id"], onto.task_concepts["concept_id"])]


@pytest.fixture
def export_dir(tmp_path):
    return write_export(tmp_path)


def test_full(export_dir):
    onto = read_export_dir(export_dir)
    assert is_export_dir(export_dir)
    assert onto.task_names == ["n-back task", "Eriksen flanker task", "finger tapping task", "object n-back"]
    assert named_links(onto) == LINKS
    assert dict(zip(onto.concepts["name"], onto.concepts["domain_id"])) == {
        "working memory": "ctp_C5", "response conflict": "ctp_C4", "selective attention": "ctp_C2",
        "motor control": "", "updating": "",
    }
    assert onto.domains["domain_id"].tolist() == list(DOMAINS)
    assert onto.domains.set_index("domain_id").loc["ctp_C4", "name"] == "Executive/Cognitive Control"
    assert onto.meta["source"] == "cognitive-atlas-export" and onto.meta["reduced"] is False
    assert onto.meta["counts"] == {"tasks": 4, "concepts": 5, "domains": 10, "links": 5, "tasks_with_links": 3,
                                   "undefined_tasks": 1, "repeated_task_names": ["N-Back  Task"]}


def test_reduced_keeps_linked_tasks(export_dir):
    onto = read_export_dir(export_dir, reduced=True)
    assert onto.task_names == ["n-back task", "Eriksen flanker task", "finger tapping task"]
    assert named_links(onto) == LINKS
    assert len(onto.concepts) == 5
    assert onto.meta["reduced"] is True and onto.meta["counts"]["tasks"] == 3


def test_load_ontology_reads_export(export_dir):
    for reduced in (False, True):
        loaded, direct = load_ontology(export_dir, reduced=reduced), read_export_dir(export_dir, reduced=reduced)
        for table in ("tasks", "concepts", "domains", "task_concepts"):
            pd.testing.assert_frame_equal(getattr(loaded, table), getattr(direct, table))
        assert loaded.meta == direct.meta
    assert load_ontology(export_dir).task_names == read_export_dir(export_dir, reduced=True).task_names


def test_optional_files(export_dir):
    (export_dir / "ConceptClassCollection.json").unlink()
    (export_dir / "AssertionCollection.json").unlink()
    onto = read_export_dir(export_dir)
    assert onto.domains["name"].tolist() == list(DOMAINS.values())
    assert named_links(onto) == [pair for pair in LINKS if pair[1] not in ("updating", "selective attention")]


def test_native_round_trip(export_dir, tmp_path):
    onto = read_export_dir(export_dir, reduced=True)
    back = read_native(save_ontology(onto, tmp_path / "native"))
    assert back.task_names == onto.task_names and back.meta == onto.meta
    assert named_links(back) == LINKS


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("TaskCollection.json", "{not json", "cannot read"),
        ("ConceptCollection.json", json.dumps([{"id": "trm_wm"}]), "entries"),
        ("AssertionCollection.json", json.dumps({"entries": [{"name": "no id"}]}), "has no id"),
        ("ConceptCollection.json", json.dumps({"entries": [{"id": "a", "name": "x"}, {"id": "a"}]}), "repeats the id"),
        ("ConceptClassCollection.json", json.dumps({"entries": [{"id": "ctp_C11", "name": "Other"}]}), "ctp_C11"),
    ],
)
def test_malformed_names_the_file(tmp_path, name, text, problem):
    write_export(tmp_path, **{name: text})
    with pytest.raises(InputError, match=problem) as info:
        read_export_dir(tmp_path)
    assert str(tmp_path / name) in str(info.value)


# the real export (github.com/CognitiveAtlas/legacy_cogat_linkml, commit 15052ad), when present
N_BACK = ["adaptive n-back task", "face n-back task", "letter n-back task", "n-back task", "spatial n-back task",
          "object n-back", "Multi-class n-back task", "Penn Fractal N-Back"]


@pytest.fixture(scope="module")
def real_sets(real_data):
    directory = real_data / "cognitive_atlas"
    return read_export_dir(directory), read_export_dir(directory, reduced=True)


def test_real_counts(real_sets):
    full, reduced = real_sets
    for onto, n_tasks in ((full, 849), (reduced, 557)):
        assert (len(onto.tasks), len(onto.concepts), len(onto.domains), len(onto.task_concepts)) == (n_tasks, 911, 10, 1419)
        assert not onto.concepts["name"].str.casefold().duplicated().any()
        assert onto.task_concepts["task_id"].nunique() == 557
        assert (onto.concepts["domain_id"] != "").sum() == 505
    assert full.meta["counts"]["undefined_tasks"] == 2
    assert sorted(full.meta["counts"]["repeated_task_names"]) == ["Boston Naming Test", "False Belief task"]


def test_real_tasks(real_sets):
    full, reduced = real_sets
    assert [n for n in full.task_names if "n-back" in n.casefold()] == N_BACK
    assert [n for n in reduced.task_names if "n-back" in n.casefold()] == [
        n for n in N_BACK if n not in ("object n-back", "Multi-class n-back task")
    ]
    for name in ("Eriksen flanker task", "finger tapping task", "motor fMRI task paradigm"):
        assert name in full.task_names and name in reduced.task_names
    assert "working memory" in full.concepts_of("n-back task")
    assert sorted(full.concepts_of("finger tapping task")) == ["motor control", "motor planning", "rhythm"]
    assert "response conflict" in full.concepts_of("Eriksen flanker task")


def test_real_load_ontology(real_data, real_sets):
    loaded = load_ontology(real_data / "cognitive_atlas", reduced=False)
    pd.testing.assert_frame_equal(loaded.task_concepts, real_sets[0].task_concepts)
    assert loaded.task_names == real_sets[0].task_names


def test_repeated_concept_names_are_merged(tmp_path):
    namesake = {"id": "trm_wm2", "name": "Working  Memory", "definition_text": "again", "measured_by": ["cnt_fl"]}
    write_export(tmp_path, **{"ConceptCollection.json": json.dumps({"entries": [*CONCEPTS, namesake]})})
    onto = read_export_dir(tmp_path)
    assert "trm_wm2" not in set(onto.concepts["concept_id"])
    assert ("Eriksen flanker task", "working memory") in named_links(onto)  # the namesake's link, merged
