"""Decoder on a toy bundle against the reference's prediction flow written out in the test."""

import hashlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from nilearn.datasets import load_sample_motor_activation_image
from scipy.ndimage import affine_transform

from niclip_ray._testing import toy_bundle
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.export import reference_tables
from niclip_ray.decoding.schema import DECODE_SCHEMA
from niclip_ray.errors import ConfigError, InputError
from niclip_ray.model import CLIP
from niclip_ray.model.bundle import load_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


@pytest.fixture(scope="module")
def decoder(bundle_dir):
    path, atlas_dir = bundle_dir
    return Decoder(path, atlas_dir=atlas_dir)


def reference_predict(img, bundle, atlas_maps, s):
    """The decoding recipe step by step: resample to the mask grid, least squares on the atlas, CLIP, posterior, noisy-OR loops."""
    mask = nib.load(bundle.mask_path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    to_source = np.linalg.inv(img.affine) @ mask.affine  # cubic spline, unclipped, as resample_to_img
    y = affine_transform(data, to_source[:3, :3], to_source[:3, 3], output_shape=mask.shape, order=3)
    maps = nib.load(atlas_maps).get_fdata()
    support = np.any(maps != 0, axis=3)
    X = maps[support]  # voxels x components
    beta, *_ = np.linalg.lstsq(X, np.nan_to_num(y[support]), rcond=None)
    vocab = bundle.vocabulary
    text = torch.tensor(np.stack(vocab["emb_combined"]), dtype=torch.float32)
    image = torch.tensor(beta[None, :], dtype=torch.float32)
    text = text / (text.norm(dim=-1, keepdim=True) + 1e-8)
    image = image / (image.norm(dim=-1, keepdim=True) + 1e-8)
    model = CLIP.from_state_dict(bundle.state_dict).eval()
    with torch.no_grad():
        f_img, f_txt, _ = model(image, text)
    sim = (s * f_img @ f_txt.T).double().flatten()
    lik = sim.softmax(dim=-1)
    prior = torch.tensor(vocab["prior"].to_numpy())
    joint = lik * prior
    post = joint / joint.sum()
    bf = (post / (1 - post)) / (prior / (1 - prior))
    onto = bundle.ontology
    task_index = {t: i for i, t in enumerate(onto.tasks["task_id"])}
    concept_prob = []
    for cid in onto.concepts["concept_id"]:
        tasks = [task_index[t] for t in onto.task_concepts.loc[onto.task_concepts["concept_id"] == cid, "task_id"]]
        concept_prob.append(float(1 - (1 - post[tasks]).prod()) if tasks else 0.0)
    domain_prob = []
    for did in onto.domains["domain_id"]:
        members = np.flatnonzero(onto.concepts["domain_id"].to_numpy() == did)
        domain_prob.append(1 - np.prod([1 - concept_prob[c] for c in members]))
    return sim.numpy(), lik.numpy(), post.numpy(), bf.numpy(), np.array(concept_prob), np.array(domain_prob)


def test_matches_reference_flow(decoder, bundle_dir):
    path, atlas_dir = bundle_dir
    bundle = load_bundle(path)
    img = load_sample_motor_activation_image()
    every_term = Decoder(path, atlas_dir=atlas_dir, topk=None, projector=decoder.projector)
    result = every_term.transform(img)
    assert list(result.columns) == DECODE_SCHEMA.names and set(result["map_id"]) == {"image_10426"}
    atlas_maps = atlas_dir / "difumo_atlases" / "64" / "2mm" / "maps.nii.gz"
    sim, lik, post, bf, concept, domain = reference_predict(nib.load(img), bundle, atlas_maps, 20.0)
    names = bundle.vocabulary["name"].tolist()
    task = result[result.level == "task"].set_index("term").loc[names]
    np.testing.assert_allclose(task["similarity"], sim, atol=1e-5)
    np.testing.assert_allclose(task["likelihood"], lik, atol=1e-6)
    np.testing.assert_allclose(task["prob"], post, atol=1e-6)
    np.testing.assert_allclose(task["bayes_factor"], bf, rtol=1e-5)
    np.testing.assert_allclose(task["prior"], bundle.vocabulary["prior"])
    got_c = result[result.level == "concept"].set_index("term").loc[bundle.ontology.concepts["name"], "prob"]
    np.testing.assert_allclose(got_c, concept, atol=1e-6)
    got_d = result[result.level == "domain"].set_index("term").loc[bundle.ontology.domains["name"], "prob"]
    np.testing.assert_allclose(got_d, domain, atol=1e-6)


def test_ranks_topk_and_reference_tables(decoder, bundle_dir):
    top5 = Decoder(bundle_dir[0], topk=5, projector=decoder.projector)
    result = top5.transform(load_sample_motor_activation_image())
    counts = result.groupby("level").size().to_dict()
    assert counts == {"task": 5, "concept": 5, "domain": 10}
    for _, rows in result.groupby("level"):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert (np.diff(rows["prob"].to_numpy()) <= 0).all()
    tables = reference_tables(result)
    assert list(tables["task"].columns) == [
        "pred", "prob", "similarity", "likelihood", "prior_prob", "joint_prob", "bayes_factor"]
    assert list(tables["domain"].columns) == ["pred", "prob"] and len(tables["domain"]) == 10
    np.testing.assert_allclose(tables["task"]["joint_prob"], tables["task"]["likelihood"] * tables["task"]["prior_prob"])


def test_batch_equals_single(decoder):
    img = nib.load(load_sample_motor_activation_image())
    beta = decoder.project(img)
    flipped = nib.Nifti1Image(-np.asarray(img.dataobj), img.affine)
    both = decoder.decode_features(np.stack([beta, decoder.project(flipped)]), ["a", "b"])
    single = decoder.decode_features(beta[None], ["a"])
    np.testing.assert_allclose(both[both.map_id == "a"]["prob"].to_numpy(), single["prob"].to_numpy(), rtol=1e-6)


def test_get_params_rebuild_the_decoder_and_describe_says_what_it_runs(decoder, bundle_dir):
    path, atlas_dir = bundle_dir
    params = decoder.get_params()
    assert params == {"bundle": str(path), "topk": 10, "logit_scale": 20.0, "hierarchical": True,
                      "atlas_dir": atlas_dir, "allow_atlas_mismatch": False, "embedding": "combined",
                      "rank_by": "posterior"}
    img = load_sample_motor_activation_image()
    pd.testing.assert_frame_equal(Decoder(**params).transform(img), decoder.transform(img))
    bundle = load_bundle(path)
    fresh = Decoder(path, atlas_dir=atlas_dir, topk=None, hierarchical=False)
    assert fresh.describe() == {
        "bundle": str(path),
        "bundle_sha256": hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()[:16],
        "text_model_id": "toy-random",
        "n_train_studies": None,
        "atlas_id": "toy-difumo64-8mm-standin-seed0",
        "atlas_standin": True,
        "atlas_dim": 64,
        "vocabulary_embedding": "combined",
        "n_terms": {"task": len(bundle.vocabulary)},
        "prior": "vocabulary",
        "logit_scale": 20.0,
        "topk": None,
        "hierarchical": False,
        "rank_by": "posterior",
    }
    assert fresh._projector is None  # describing finds the atlas but builds no projector
    assert decoder.describe()["n_terms"] == {"task": len(bundle.vocabulary), "concept": len(bundle.ontology.concepts),
                                             "domain": len(bundle.ontology.domains)}
    with pytest.raises(InputError, match="topk must be a whole number from 1"):
        Decoder(path, topk=0)


def test_logit_scale_override(bundle_dir):
    path, atlas_dir = bundle_dir
    img = load_sample_motor_activation_image()
    a = Decoder(path, atlas_dir=atlas_dir, logit_scale=10.0, topk=None).transform(img)
    b = Decoder(path, atlas_dir=atlas_dir, topk=None).transform(img)
    ta, tb = (x[x.level == "task"].set_index("term").sort_index() for x in (a, b))
    np.testing.assert_allclose(ta["similarity"] * 2, tb["similarity"], rtol=1e-6)


def test_bad_maps_are_named(decoder, tmp_path):
    img = nib.load(load_sample_motor_activation_image())
    zero = nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine)
    with pytest.raises(InputError, match="map zero.nii: no signal on the atlas"):
        decoder.project(zero, name="zero.nii")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10), np.float32), np.eye(4)), flat)
    with pytest.raises(InputError, match="flat.nii.gz.*3-D"):
        decoder.transform(flat, errors="raise")


def test_atlas_mismatch_is_refused(bundle_dir, tmp_path):
    from niclip_ray.model.bundle import save_bundle

    path, atlas_dir = bundle_dir
    bundle = load_bundle(path)
    config = {**bundle.config, "atlas_id": "difumo64-2mm"}  # claims the real DiFuMo
    other = save_bundle(tmp_path / "b", bundle.state_dict, config, bundle.vocabulary, bundle.ontology,
                        mask_file=bundle.mask_path)
    with pytest.raises(ConfigError, match="holds no DiFuMo 64 atlas.*the bundle needs atlas difumo64-2mm"):
        Decoder(other, atlas_dir=atlas_dir).project(load_sample_motor_activation_image())
    config["atlas_id"] = "toy-difumo64-8mm-standin-seed0-other"
    odd = save_bundle(tmp_path / "c", bundle.state_dict, config, bundle.vocabulary, mask_file=bundle.mask_path)
    with pytest.raises(ConfigError, match="finds atlas toy-difumo64-8mm-standin-seed0 but the bundle was trained on atlas "
                       "toy-difumo64-8mm-standin-seed0-other"):
        Decoder(odd, atlas_dir=atlas_dir).project(load_sample_motor_activation_image())
    ok = Decoder(other, atlas_dir=atlas_dir, allow_atlas_mismatch=True)
    assert ok.atlas_id == "toy-difumo64-8mm-standin-seed0"


def test_without_ontology_only_tasks(tmp_path):
    path = toy_bundle(tmp_path / "b", tmp_path / "atlas", with_ontology=False)
    dec = Decoder(path, atlas_dir=tmp_path / "atlas")
    assert set(dec.transform(load_sample_motor_activation_image())["level"]) == {"task"}
    with pytest.raises(InputError, match="needs a bundle with an ontology"):
        Decoder(path, hierarchical=True)


def test_a_test_bundle_never_decodes_on_the_real_standin(bundle_dir):
    from niclip_ray.atlas.difumo import build_standin, default_standin_dir

    path, _ = bundle_dir
    build_standin(default_standin_dir(0), 64, seed=0)
    with pytest.raises(ConfigError, match="finds atlas difumo64-2mm-standin-seed0 but the bundle was trained on atlas "
                                          "toy-difumo64-8mm-standin-seed0"):
        Decoder(path, atlas_dir=default_standin_dir(0)).project(load_sample_motor_activation_image())


def test_a_standin_atlas_warns_and_frames_carry_the_atlas_id(bundle_dir):
    import warnings

    path, atlas_dir = bundle_dir
    decoder = Decoder(path, atlas_dir=atlas_dir)
    with pytest.warns(UserWarning, match="offline stand-in for the DiFuMo atlas"):
        frame = decoder.transform(load_sample_motor_activation_image())
    assert set(frame["atlas_id"]) == {"toy-difumo64-8mm-standin-seed0"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoder.transform(load_sample_motor_activation_image())  # warned once per decoder
