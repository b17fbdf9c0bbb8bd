"""``/v1/search/image`` and ``/v1/search/text``: the numbers of :class:`Index`, the token, the limits, the 404."""

import asyncio

import numpy as np
import pytest
import requests
from fastapi import HTTPException
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.retrieval import Index
from niclip_ray.serve.app import NO_INDEX, DecodeService, ServiceSettings

from .conftest import MAX_UPLOAD

pytestmark = pytest.mark.timeout(600)
MOTOR = load_sample_motor_activation_image()
TIMEOUT = 120


@pytest.fixture(scope="module")
def index(service, toy, index_dir):
    bundle, atlas = toy
    return Index(index_dir, bundle, atlas_dir=atlas)


def assert_same_studies(body, table):
    assert [s["pmid"] for s in body["studies"]] == table["pmid"].tolist()
    assert [s["title"] for s in body["studies"]] == table["title"].tolist()
    assert [s["rank"] for s in body["studies"]] == table["rank"].tolist()
    np.testing.assert_allclose([s["score"] for s in body["studies"]], table["score"], rtol=1e-6, atol=1e-6)
    assert all(set(s) == {"rank", "study_id", "pmid", "doi", "title", "in_training", "score"} for s in body["studies"])


@pytest.mark.parametrize("against", ["text", "image"])
def test_image_search_equals_index(service, index, against):
    url, session = service
    with open(MOTOR, "rb") as f:
        body = f.read()
    response = session.post(f"{url}/v1/search/image", data=body, params={"top_k": 5, "against": against},
                            timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["against"] == against
    assert_same_studies(response.json(), index.search_image(MOTOR, top_k=5, against=against))


def test_text_search_equals_index(service, index):
    url, session = service
    response = session.get(f"{url}/v1/search/text", params={"q": "working memory load", "top_k": 4}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = index.search_text("working memory load", top_k=4)
    assert_same_studies(body, expected.studies)
    np.testing.assert_allclose(body["coefficients"], expected.coefficients, rtol=1e-6, atol=1e-6)
    assert body["query"] == "working memory load" and len(body["coefficients"]) == 64


def test_search_refusals(service):
    url, session = service
    assert requests.get(f"{url}/v1/search/text", params={"q": "memory"}, timeout=TIMEOUT).status_code == 401
    assert requests.post(f"{url}/v1/search/image", data=b"x", timeout=TIMEOUT).status_code == 401
    too_big = session.post(f"{url}/v1/search/image", data=b"\0" * (MAX_UPLOAD + 1), timeout=TIMEOUT)
    assert too_big.status_code == 413
    assert session.post(f"{url}/v1/search/image", data=b"not nifti", timeout=TIMEOUT).status_code == 400
    empty = session.get(f"{url}/v1/search/text", params={"q": "  "}, timeout=TIMEOUT)
    assert empty.status_code == 422 and "unusable" in empty.json()["detail"]
    bad = session.get(f"{url}/v1/search/text", params={"q": "memory", "against": "both"}, timeout=TIMEOUT)
    assert bad.status_code == 422


def test_without_an_index_search_answers_404():
    """The handlers themselves (no Ray): a replica started without --index says why in one line."""
    replica = object.__new__(DecodeService.func_or_class)
    replica.settings, replica.study_index, replica.counters = ServiceSettings(bundle="unused"), None, {}
    for call in (replica.search_text(None, q="memory"), replica.search_image(None)):
        with pytest.raises(HTTPException) as caught:
            asyncio.run(call)
        assert caught.value.status_code == 404 and caught.value.detail == NO_INDEX and "\n" not in NO_INDEX


def test_healthz_says_loading_until_the_index_has_answered_its_warm_up_query(service, toy, index_dir, monkeypatch):
    """The replica itself (no Ray): the first search is answered only after the text model loaded."""
    import threading

    bundle, atlas = toy
    release, asked = threading.Event(), []
    real = Index.search_text

    def slow_search_text(self, query, top_k=20, against="text"):
        asked.append(query)
        release.wait(60)
        return real(self, query, top_k, against)

    monkeypatch.setattr(Index, "search_text", slow_search_text)
    ours = DecodeService.func_or_class.__mro__[1]  # the class under Serve's ASGI wrapper
    replica = object.__new__(ours)
    ours.__init__(replica, ServiceSettings(bundle=str(bundle), atlas_dir=str(atlas), index=str(index_dir)))
    loading = asyncio.run(replica.healthz())
    assert loading.status_code == 503 and b'"loading"' in loading.body and asked == ["working memory"]
    release.set()
    assert replica.loaded.wait(120)
    assert asyncio.run(replica.healthz()).status_code == 200
