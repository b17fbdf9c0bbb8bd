"""Uploads, responses and replica sizing without Ray: parsing from memory, limits, levels, CPU/GPU shares."""

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from niclip_ray.serve import control
from niclip_ray.serve.responses import decode_response, parse_levels
from niclip_ray.serve.uploads import UploadError, map_checks, read_nifti


def image(shape=(4, 5, 6)):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    data[0, 0, 0] = np.nan
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.mark.parametrize("compress", [False, True])
def test_nifti1_and_nifti2_bodies_parse_from_memory(compress):
    for img in (image(), nib.Nifti2Image(image().get_fdata(dtype=np.float32), image().affine)):
        body = img.to_bytes()
        parsed = read_nifti(gzip.compress(body) if compress else body)
        np.testing.assert_array_equal(np.asarray(parsed.dataobj), np.asarray(img.dataobj))
    assert map_checks(read_nifti(image().to_bytes()), resampled=True) == {
        "shape": [4, 5, 6], "voxel_mm": [2.0, 2.0, 2.0], "resampled": True, "nan_count": 1}


def test_refusals_carry_their_status():
    zeros_gzip = gzip.compress(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)).to_bytes())
    cases = [(b"", 400, "no body"), (b"x" * 400, 400, "single-file NIfTI"), (b"\x1f\x8bjunk", 400, "gzip"),
             (b"\x00" * 2000, 413, "limit"), (zeros_gzip, 413, "inflates")]
    for body, status, words in cases:
        with pytest.raises(UploadError, match=words) as info:
            read_nifti(body, max_bytes=1000)
        assert info.value.status == status
    pair = nib.Nifti1Pair(np.zeros((2, 2, 2), np.float32), np.eye(4))
    header = pair.header.binaryblock  # magic ni1: the image would live in another file
    with pytest.raises(UploadError, match="single-file") as info:
        read_nifti(header + b"\x00" * 64)
    assert info.value.status == 400


def test_levels_and_response():
    assert parse_levels("domain, task", hierarchical=True) == ["task", "domain"]
    assert parse_levels("task,concept,domain", hierarchical=False) == ["task"]
    with pytest.raises(ValueError, match="levels"):
        parse_levels("task,mood", hierarchical=True)
    frame = pd.DataFrame({"level": ["task"] * 3 + ["domain"] * 2, "rank": [2, 1, 3, 1, 2],
                          "term_id": list("abcde"), "term": list("ABCDE"), "prob": [0.3, 0.5, 0.2, 0.9, 0.1],
                          "similarity": [1.0, 2.0, 0.5, np.nan, np.nan], "likelihood": 0.1, "prior": 0.2,
                          "bayes_factor": [1.0, 0.5, 3.0, np.nan, np.nan],
                          "against_map": pd.array([False, True, False, None, None], dtype="boolean"),
                          "hub": pd.array([None] * 5, dtype="boolean")})
    body = decode_response(frame, ["task", "domain"], 2, {"nan_count": 0}, {"bundle_sha256": "x"})
    assert [r["term"] for r in body["results"]["task"]] == ["B", "A"]
    assert [r["against_map"] for r in body["results"]["task"]] == [True, False]
    assert all(r["hub"] is None for level in body["results"].values() for r in level)
    assert len(body["results"]["domain"]) == 2 and body["results"]["domain"][0]["bayes_factor"] is None
    assert body["results"]["domain"][0]["against_map"] is None


def test_replicas_get_a_cpu_share_and_a_gpu_each_when_there_are_enough(monkeypatch):
    monkeypatch.setattr(control, "actor_pool_shape", lambda n, cpus_per_actor: (n, 0.75))
    monkeypatch.setattr(control, "cluster_gpus", lambda: 0.0)
    assert control.replica_resources(2) == (2, {"num_cpus": 0.75})
    monkeypatch.setattr(control, "cluster_gpus", lambda: 2.0)
    assert control.replica_resources(2) == (2, {"num_cpus": 0.75, "num_gpus": 1})
    assert control.replica_resources(3) == (3, {"num_cpus": 0.75})


@pytest.mark.parametrize(("host", "where"), [("127.0.0.1", "HeadOnly"), ("localhost", "HeadOnly"),
                                             ("0.0.0.0", "EveryNode"), ("10.0.0.5", "EveryNode")])
def test_a_loopback_service_has_one_proxy_on_the_head(host, where):
    assert control.proxy_location(host) == where
