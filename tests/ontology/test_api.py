"""Cognitive Atlas API snapshot, with the HTTP getter replaced (never the network)."""

import pytest

from niclip_ray.errors import InputError
from niclip_ray.ontology import load_ontology
from niclip_ray.ontology.api import API, fetch_snapshot

RESPONSES = {
    f"{API}/task": [
        {"id": "trm_t1", "name": "n-back task", "definition_text": "remember"},
        {"id": "trm_t2", "name": "stroop task", "definition_text": "name the ink"},
    ],
    f"{API}/concept": [
        {"id": "trm_c1", "name": "working memory", "definition_text": "hold", "id_concept_class": "ctp_C5"},
        {"id": "trm_c2", "name": "response conflict", "definition_text": "compete", "id_concept_class": "ctp_C4"},
    ],
    f"{API}/task?id=trm_t1": {"id": "trm_t1", "concepts": [{"concept_id": "trm_c1", "relationship": "measuredBy"}]},
    f"{API}/task?id=trm_t2": [{"id": "trm_t2", "concepts": [{"concept_id": "trm_c2", "relationship": "measuredBy"},
                                                            {"concept_id": "trm_c1", "relationship": "unrelated"}]}],
}


def test_snapshot_then_cache(tmp_path):
    calls = []

    def fake(url):
        calls.append(url)
        return RESPONSES[url]

    fetch_snapshot(tmp_path, relations=True, get_json=fake, threads=2)
    onto = load_ontology(tmp_path, reduced=False)
    assert onto.task_names == ["n-back task", "stroop task"]
    assert onto.concepts_of("n-back task") == ["working memory"]
    assert onto.concepts_of("stroop task") == ["response conflict"]
    n_calls = len(calls)
    assert n_calls == 4
    fetch_snapshot(tmp_path, relations=True, get_json=fake)
    assert len(calls) == n_calls  # reused from the cache


def test_unreachable_api_is_a_clear_error(tmp_path):
    def offline(url):
        raise OSError("Name or service not known")

    with pytest.raises(InputError, match="Cognitive Atlas API is unreachable .*Name or service"):
        fetch_snapshot(tmp_path, get_json=offline)
    with pytest.raises(InputError, match="returned no task list"):
        fetch_snapshot(tmp_path, get_json=lambda url: {"error": "rate limited"})


def test_load_ontology_online_uses_the_cache(tmp_path, monkeypatch):
    import niclip_ray.ontology.api as api

    monkeypatch.setattr(api, "http_get_json", lambda url: RESPONSES[url])
    onto = load_ontology("online", reduced=False, cache_dir=tmp_path)
    assert onto.task_names == ["n-back task", "stroop task"]
    monkeypatch.setattr(api, "http_get_json", lambda url: pytest.fail(f"called {url} despite the cache"))
    assert load_ontology("online", reduced=False, cache_dir=tmp_path).task_names == onto.task_names
