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
    assert all(set(s) == {"rank", "pmid", "title", "score"} for s in body["studies"])


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
