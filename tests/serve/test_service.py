"""The service over HTTP: the same numbers as ``Decoder.transform``, each bad input's status, the token."""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray import Decoder

from .conftest import TOKEN

pytestmark = pytest.mark.timeout(600)
MOTOR = load_sample_motor_activation_image()
TIMEOUT = 120
MOTOR_BYTES = Path(MOTOR).read_bytes()


def nifti_bytes(data, affine=None) -> bytes:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine)
    return gzip.compress(img.to_bytes())


def decode(service, body, params=None, **kwargs):
    url, session = service
    return session.post(f"{url}/v1/decode", data=body, params=params or {}, timeout=TIMEOUT, **kwargs)


def test_json_equals_decoder_transform(service, toy):
    bundle, atlas = toy
    response = decode(service, MOTOR_BYTES, {"top_k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Decoder.from_bundle(bundle, atlas_dir=atlas, topk=5).transform(MOTOR)
    assert sorted(body["results"]) == ["concept", "domain", "task"]
    for level, rows in body["results"].items():
        want = expected[expected["level"] == level]
        assert [r["term"] for r in rows] == want["term"].tolist() and [r["rank"] for r in rows] == want["rank"].tolist()
        np.testing.assert_allclose([r["prob"] for r in rows], want["prob"], rtol=1e-6, atol=1e-9)
        if level == "task":
            for name in ("similarity", "prior", "bayes_factor", "likelihood"):
                np.testing.assert_allclose([r[name] for r in rows], want[name], rtol=1e-6, err_msg=name)
        else:
            assert rows[0]["bayes_factor"] is None
    assert body["map"] == {"shape": [53, 63, 46], "voxel_mm": [3.0, 3.0, 3.0], "resampled": True,
                           "nan_count": int((~np.isfinite(nib.load(MOTOR).get_fdata())).sum())}
    assert body["model"]["bundle_sha256"] == Decoder.from_bundle(bundle, atlas_dir=atlas).describe()["bundle_sha256"]


def test_rank_by_orders_the_tasks_as_the_decoder_does(service, toy):
    bundle, atlas = toy
    body = decode(service, MOTOR_BYTES, {"top_k": 5, "rank_by": "likelihood", "levels": "task"}).json()
    expected = Decoder.from_bundle(bundle, atlas_dir=atlas, topk=5, rank_by="likelihood").transform(MOTOR)
    rows = body["results"]["task"]
    assert [r["term"] for r in rows] == expected.loc[expected["level"] == "task", "term"].tolist()
    assert [r["likelihood"] for r in rows] == sorted((r["likelihood"] for r in rows), reverse=True)
    assert [r["against_map"] for r in rows] == [r["bayes_factor"] < 1 for r in rows]
    assert {r["hub"] for r in rows} == {None} and body["model"]["rank_by"] == "likelihood"


def test_multipart_upload_and_query(service):
    url, session = service
    with open(MOTOR, "rb") as handle:
        response = session.post(f"{url}/v1/decode", files={"file": ("motor.nii.gz", handle)},
                                params={"levels": "task", "top_k": 3}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert list(response.json()["results"]) == ["task"] and len(response.json()["results"]["task"]) == 3
    flat = decode(service, MOTOR_BYTES, {"hierarchical": "false"}).json()
    assert list(flat["results"]) == ["task"]


def header_only(shape, dtype) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    return header.binaryblock + b"\x00" * 4


def shifted_affine():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = 10_000.0
    return affine


BAD = [  # (name, body, params, status, words in the reason)
    ("empty body", b"", {}, 400, "no body"),
    ("not nifti", b"hello, this is not an image" * 20, {}, 400, "not a single-file NIfTI"),
    ("broken gzip", b"\x1f\x8b" + b"\x00" * 50, {}, 400, "gzip"),
    ("2-D image", nifti_bytes(np.ones((20, 20))), {}, 422, "3-D"),
    ("5-D image", nifti_bytes(np.ones((5, 5, 5, 2, 2))), {}, 422, "3-D"),
    ("all NaN", nifti_bytes(np.full((20, 20, 20), np.nan)), {}, 422, "NaN"),
    ("off brain", nifti_bytes(np.ones((20, 20, 20)), shifted_affine()), {}, 422, "MNI"),
    ("too large", b"\x00" * (2 * 1024 * 1024), {}, 413, "limit"),
    ("gzip bomb", nifti_bytes(np.zeros((160, 160, 100))), {}, 413, "inflates"),
    ("voxel bomb", gzip.compress(header_only((800, 800, 780), np.uint8)), {}, 413, "800x800x780 voxels of uint8"),
    ("header of 32767^4", header_only((32767,) * 4, np.float64), {}, 413, "32767x32767x32767x32767 voxels"),
    ("bad level", None, {"levels": "task,mood"}, 422, "levels"),
    ("bad top_k", None, {"top_k": 0}, 422, ""),
    ("bad rank_by", None, {"rank_by": "prior"}, 422, "rank_by must be one of posterior, bayes-factor, likelihood"),
]


@pytest.mark.parametrize(("name", "body", "params", "status", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_status_then_a_good_request_succeeds(service, name, body, params, status, words):
    body = MOTOR_BYTES if body is None else body
    response = decode(service, body, params)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert words in detail and "\n" not in detail
    assert decode(service, MOTOR_BYTES, {"top_k": 1}).status_code == 200


def test_streamed_body_over_the_limit_is_413(service):
    def chunks():
        for _ in range(40):
            yield b"\x00" * 64 * 1024  # no Content-Length: the limit applies while reading

    assert decode(service, chunks()).status_code == 413


def test_token_is_enforced_except_for_healthz(service):
    url, _ = service
    assert requests.get(f"{url}/healthz", timeout=TIMEOUT).status_code == 200
    for path in ("/", "/v1/model", "/metrics"):
        assert requests.get(f"{url}{path}", timeout=TIMEOUT).status_code == 401
        assert requests.get(f"{url}{path}", headers={"Authorization": "Bearer wrong"}, timeout=TIMEOUT).status_code == 401
    for scheme in ("bearer", "BEARER"):
        assert requests.get(f"{url}/v1/model", headers={"Authorization": f"{scheme} {TOKEN}"},
                            timeout=TIMEOUT).status_code == 200
    anonymous = requests.post(f"{url}/v1/decode", data=MOTOR_BYTES, timeout=TIMEOUT)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"


def test_model_and_metrics(service, toy):
    url, session = service
    model = session.get(f"{url}/v1/model", timeout=TIMEOUT).json()
    assert "files" in model["manifest"] or model["manifest"]
    assert model["vocabulary_sizes"]["task"] > 0 and model["describe"]["atlas_standin"]
    metrics = session.get(f"{url}/metrics", timeout=TIMEOUT).json()
    assert metrics["decoded"] >= 1 and metrics["peak_rss_mib"] > 0 and metrics["batches"] >= 1
    import ray

    assert metrics["node_id"] in {node["NodeID"] for node in ray.nodes()} and metrics["pid"] > 0
    assert "stand-in" in session.get(f"{url}/", timeout=TIMEOUT).text


def test_upload_never_reads_server_paths(service, toy):
    """A path in the body is just bytes that are not NIfTI; the request has no field that names a file."""
    bundle, _ = toy
    response = decode(service, str(bundle / "manifest.json").encode())
    assert response.status_code == 400
    response = decode(service, b"", {"path": str(bundle / "manifest.json")})
    assert response.status_code == 400 and "no body" in response.json()["detail"]


def test_status_reports_the_running_replica(service):
    from niclip_ray.serve.control import service_status

    state = service_status()
    assert state["status"] == "RUNNING"
    assert state["deployments"]["NiclipDecoder"]["replicas"] == {"RUNNING": 1}
