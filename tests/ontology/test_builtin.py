"""The shipped offline ontology subset and the vocabulary-order check."""

import numpy as np
import pytest

from niclip_ray.errors import InputError
from niclip_ray.ontology import DOMAINS, align_to_vocabulary, check_vocabulary_order, load_ontology, save_ontology


@pytest.fixture(scope="module")
def onto():
    return load_ontology("builtin")


def test_sizes_and_labels(onto):
    assert len(onto.tasks) >= 40
    assert onto.domains["domain_id"].tolist() == list(DOMAINS)
    assert onto.meta["subset"] is True and "subset" in onto.meta["description"]


def test_every_task_has_a_definition_and_a_concept(onto):
    assert (onto.tasks["definition"].str.len() > 20).all()
    assert (onto.concepts["definition"].str.len() > 20).all()
    per_task = np.asarray(onto.task_concept_matrix.sum(axis=1)).ravel()
    assert (per_task >= 1).all()
    per_concept = np.asarray(onto.concept_domain_matrix.sum(axis=1)).ravel()
    assert (per_concept == 1).all()  # every concept sits in exactly one domain


@pytest.mark.parametrize(
    "task",
    ["n-back task", "eriksen flanker task", "stroop task", "go/no-go task", "stop signal task", "face matching task",
     "false belief task", "motor fMRI task paradigm", "story comprehension task", "gambling fMRI task paradigm",
     "relational processing fMRI task paradigm", "emotion processing fMRI task paradigm"],
)
def test_common_fmri_tasks_are_present(onto, task):
    assert task in onto.task_names


def test_nback_and_flanker_measure_different_things(onto):
    assert "working memory" in onto.concepts_of("n-back task")
    assert "response conflict" in onto.concepts_of("eriksen flanker task")
    assert not set(onto.concepts_of("n-back task")) & set(onto.concepts_of("eriksen flanker task"))


def test_vocabulary_order_check(onto):
    names = onto.task_names
    check_vocabulary_order([n.upper() for n in names], onto)  # case and spacing are not significant
    swapped = list(names)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    with pytest.raises(InputError, match=f"position 3 is {swapped[3]!r}"):
        check_vocabulary_order(swapped, onto, source="vocab.txt")
    with pytest.raises(InputError, match="1 not in the ontology .*1 ontology tasks missing"):
        check_vocabulary_order([*names[:-1], "made-up task"], onto)


def test_align_to_vocabulary(onto):
    sub = align_to_vocabulary(onto, ["eriksen flanker task", "n-back task"])
    assert sub.task_names == ["eriksen flanker task", "n-back task"]
    matrix = sub.task_concept_matrix.toarray()
    names = sub.concepts["name"].tolist()
    assert matrix[0, names.index("response conflict")] == 1 and matrix[1, names.index("working memory")] == 1
    assert matrix.sum() == len(onto.concepts_of("n-back task")) + len(onto.concepts_of("eriksen flanker task"))
    with pytest.raises(InputError, match="not ontology tasks"):
        align_to_vocabulary(onto, ["nonsense task"])


def test_native_round_trip(onto, tmp_path):
    again = load_ontology(save_ontology(onto, tmp_path / "o"))
    assert again.task_names == onto.task_names
    assert (again.task_concept_matrix != onto.task_concept_matrix).nnz == 0
    assert (again.concept_domain_matrix != onto.concept_domain_matrix).nnz == 0


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="holds no ontology"):
        load_ontology(tmp_path)
    with pytest.raises(InputError, match="not 'builtin', 'online' or a directory"):
        load_ontology(tmp_path / "missing")
