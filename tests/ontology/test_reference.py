"""Readers for the reference's Cognitive Atlas files, on fixtures written here."""

import json

import pandas as pd
import pytest

from niclip_ray.errors import InputError
from niclip_ray.ontology import load_ontology
from niclip_ray.ontology.reference import read_measured_by, read_reduced_tasks

TASKS = [
    {"id": "trm_a", "name": "n-back task", "definition_text": "remember n back"},
    {"id": "trm_b", "name": "no definition task", "definition_text": ""},
    {"id": "trm_c", "name": "eriksen flanker task", "definition_text": "respond to centre"},
    {"id": "tsk_d", "name": "stroop task", "definition_text": "name the ink"},
    {"id": "trm_e", "name": "finger tapping task", "definition_text": "tap"},
]
CONCEPTS = [
    {"id": "trm_wm", "name": "working memory", "definition_text": "hold", "id_concept_class": "ctp_C5"},
    {"id": "trm_rc", "name": "response conflict", "definition_text": "compete", "id_concept_class": "ctp_C2"},
    {"id": "trm_sa", "name": "selective attention", "definition_text": "filter", "id_concept_class": "ctp_C2"},
    {"id": "trm_rd", "name": "reading", "definition_text": "decode text", "id_concept_class": ""},
    {"id": "trm_mv", "name": "movement", "definition_text": "move", "id_concept_class": "ctp_C7"},
]


@pytest.fixture
def cogat_dir(tmp_path):
    (tmp_path / "task_snapshot-02-19-25.json").write_text(json.dumps(TASKS))
    (tmp_path / "concept_extended_snapshot-02-19-25.json").write_text(json.dumps(CONCEPTS))
    # reduced order differs from snapshot order; 4 concept columns; a blank cell
    (tmp_path / "reduced_tasks.csv").write_text(
        "task,concept_1,concept_2,concept_3,concept_4\n"
        "Stroop task,response conflict,reading,selective attention,working memory\n"
        "n-back task,working memory,,,\n"
        "eriksen flanker task,response conflict,selective attention,,\n"
    )
    (tmp_path / "concept_to_process.json").write_text(json.dumps({"response conflict": "ctp_C4", "reading": "ctp_C6"}))
    # as in the reference: id = concept, measuredBy = task (several tasks in one cell allowed)
    (tmp_path / "full_task_concepts.csv").write_text(
        "id,measuredBy\ntrm_wm,\"['trm_a']\"\ntrm_rc,trm_c;tsk_d\ntrm_sa,trm_c\ntrm_mv,trm_e\ntrm_unknown,trm_e\n"
    )
    return tmp_path


def links(onto):
    t = dict(zip(onto.tasks["task_id"], onto.tasks["name"]))
    c = dict(zip(onto.concepts["concept_id"], onto.concepts["name"]))
    return sorted((t[a], c[b]) for a, b in zip(onto.task_concepts["task_id"], onto.task_concepts["concept_id"]))


def test_reduced(cogat_dir):
    onto = load_ontology(cogat_dir, reduced=True)
    assert onto.task_names == ["n-back task", "eriksen flanker task", "stroop task"]  # snapshot order
    assert "no definition task" not in onto.concepts["name"].tolist()
    assert links(onto) == [
        ("eriksen flanker task", "response conflict"), ("eriksen flanker task", "selective attention"),
        ("n-back task", "working memory"),
        ("stroop task", "reading"), ("stroop task", "response conflict"), ("stroop task", "selective attention"),
        ("stroop task", "working memory"),
    ]
    domains = dict(zip(onto.concepts["name"], onto.concepts["domain_id"]))
    assert domains == {"working memory": "ctp_C5", "response conflict": "ctp_C4", "selective attention": "ctp_C2",
                       "reading": "ctp_C6", "movement": "ctp_C7"}  # overrides applied
    matrix = onto.task_concept_matrix.toarray()
    assert matrix.shape == (3, 5) and matrix.sum(axis=1).tolist() == [1, 2, 4]
    cd = onto.concept_domain_matrix.toarray()
    assert cd[onto.concepts["name"].tolist().index("reading"), 5] == 1


FULL_LINKS = [
    ("eriksen flanker task", "response conflict"), ("eriksen flanker task", "selective attention"),
    ("finger tapping task", "movement"), ("n-back task", "working memory"), ("stroop task", "response conflict"),
]


def test_full_uses_measured_by(cogat_dir):
    onto = load_ontology(cogat_dir, reduced=False)
    assert onto.task_names == ["n-back task", "eriksen flanker task", "stroop task", "finger tapping task"]
    assert links(onto) == FULL_LINKS  # the unknown concept id is dropped


def test_full_accepts_either_orientation_and_nimare_relationships(cogat_dir):
    (cogat_dir / "full_task_concepts.csv").write_text(
        "id,measuredBy\ntrm_a,trm_wm\ntrm_c,\"trm_rc, trm_sa\"\ntsk_d,trm_rc\ntrm_e,trm_mv\n"
    )
    assert links(load_ontology(cogat_dir, reduced=False)) == FULL_LINKS
    (cogat_dir / "full_task_concepts.csv").unlink()
    (cogat_dir / "relationships.csv").write_text(
        "input,output,rel_type\ntrm_wm,trm_a,measuredBy\ntrm_rc,trm_c,measuredBy\ntrm_sa,trm_c,measuredBy\n"
        "trm_rc,tsk_d,measuredBy\ntrm_mv,trm_e,measuredBy\ntrm_wm,trm_rc,isKindOf\n"
    )
    assert links(load_ontology(cogat_dir, reduced=False)) == FULL_LINKS


def test_unknown_concept_class_gets_no_domain(cogat_dir):
    concepts = [dict(c) for c in CONCEPTS]
    concepts[4]["id_concept_class"] = "ctp_C99"
    (cogat_dir / "concept_extended_snapshot-02-19-25.json").write_text(json.dumps(concepts))
    onto = load_ontology(cogat_dir)
    assert dict(zip(onto.concepts["name"], onto.concepts["domain_id"]))["movement"] == ""


def test_reduced_names_missing_from_snapshot(cogat_dir):
    (cogat_dir / "reduced_tasks.csv").write_text("task,concept_1\nmade-up task,working memory\nn-back task,telepathy\n")
    with pytest.raises(InputError, match=r"tasks \['made-up task'\], concepts \['telepathy'\]"):
        load_ontology(cogat_dir)


def test_bad_snapshot_names_the_file(cogat_dir):
    (cogat_dir / "task_snapshot-02-19-25.json").write_text("{not json")
    with pytest.raises(InputError, match="task_snapshot-02-19-25.json"):
        load_ontology(cogat_dir)


def test_full_without_relations(cogat_dir):
    (cogat_dir / "full_task_concepts.csv").unlink()
    with pytest.raises(InputError, match="full_task_concepts.csv or .*relationships.csv"):
        load_ontology(cogat_dir, reduced=False)


def test_readers_directly(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("task,c1,c2\nlonely task,,\n")
    assert read_reduced_tasks(path).to_dict("records") == [{"task": "lonely task", "concept": ""}]
    rel = tmp_path / "m.csv"
    rel.write_text('id,measuredBy\ntrm_1,"trm_x, trm_y"\n')
    assert read_measured_by(rel).equals(pd.DataFrame({"id": ["trm_1", "trm_1"], "measuredBy": ["trm_x", "trm_y"]}))
