"""The study index and the Index class on the tiny world, against direct computations."""

import nibabel as nib
import numpy as np
import pytest
import torch

from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.study_maps import write_study_maps
from niclip_ray.features.text import TextEmbedder
from niclip_ray.model import CLIP
from niclip_ray.model.bundle import load_bundle
from niclip_ray.retrieval.index import Index
from niclip_ray.retrieval.ridge import fit_ridge
from niclip_ray.retrieval.table import index_items, index_rows, read_index
from niclip_ray.tables import tensor_to_numpy
from niclip_ray.training.data import load_pairs
from niclip_ray.vectors import l2_normalise


@pytest.fixture(scope="module")
def built(world, ray_local):
    from niclip_ray.pipelines import index as stage

    out = world.root / "index"
    summary = stage.run(world.corpus, world.features, world.bundle, out, shard_size=8, num_actors=1)
    return summary, out


def test_rows_hold_the_heads_of_the_paired_features(world):
    plan = index_items(world.corpus, world.features, world.split, "abstract")
    assert plan.text_model_ids == ["all-minilm-l6-v2"]
    model = CLIP.from_state_dict(load_bundle(world.bundle).state_dict).eval()
    table = index_rows(plan.items, model)
    pairs = load_pairs(world.features / "images", world.features / "text", section="abstract")
    ids = table["study_id"].to_pylist()
    rows = [ids.index(s) for s in pairs.study_ids]
    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(pairs.images)).numpy()
        text = model.encode_text(torch.from_numpy(pairs.texts)).numpy()
    np.testing.assert_allclose(tensor_to_numpy(table["image_latent"])[rows], image, atol=1e-5)
    np.testing.assert_allclose(tensor_to_numpy(table["text_latent"])[rows], text, atol=1e-5)
    folds = dict(zip(ids, table["fold"].to_pylist()))
    assert all(folds[s] == part for part, members in world.split.items() for s in members)
    assert table["pmid"].to_pylist()[0].startswith("3000")


def test_stage_builds_and_resumes(world, built):
    from niclip_ray.pipelines import index as stage

    summary, out = built
    assert summary.n_shards == 4 and summary.n_failed_rows == 0 and summary.n_rows == 30
    again = stage.run(world.corpus, world.features, world.bundle, out, shard_size=8, num_actors=1)
    assert again.n_skipped == 4
    index = read_index(out)
    assert len(index) == 30 and index.meta["text_model_id"] == "all-minilm-l6-v2"


def test_index_build_refuses_another_text_model(world, ray_local):
    from niclip_ray.pipelines import index as stage

    other = world.bundle_with("bundle-smollm", text_model_id="smollm2-135m", text_model_sha256=None)
    with pytest.raises(InputError, match="trained on 'smollm2-135m'"):
        stage.run(world.corpus, world.features, other, world.root / "index-other")
    tampered = world.bundle_with("bundle-sha", text_model_sha256="0" * 64)
    with pytest.raises(InputError, match="other files"):
        stage.run(world.corpus, world.features, tampered, world.root / "index-sha")


def test_image_search_equals_brute_force(world, built):
    _, out = built
    index = Index(out, world.bundle, atlas_dir=world.atlas_dir)
    study = world.split["test"][0]
    path = write_study_maps(world.corpus, [study], world.root / "maps")[f"study-{study}"]
    for against in ("text", "image"):
        found = index.search_image(path, top_k=5, against=against)
        latent = index.image_latent(path)
        candidates = index.studies.text_latents if against == "text" else index.studies.image_latents
        scores = [float(latent @ c / np.linalg.norm(c)) for c in candidates]
        best = np.argsort(-np.array(scores), kind="stable")[:5]
        assert found["study_id"].tolist() == index.studies.study_ids[best].tolist()
        np.testing.assert_allclose(found["score"], np.array(scores)[best], atol=1e-5)
        assert found["rank"].tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ParameterError, match="against"):
        index.rank(latent[None, :], ["q"], against="both")


def test_text_search_ranks_predicts_and_writes_the_map(world, built):
    _, out = built
    index = Index(out, world.bundle, atlas_dir=world.atlas_dir)
    match = index.search_text("working memory n-back task", top_k=3)
    vector = TextEmbedder("all-minilm-l6-v2", device="cpu").embed(["working memory n-back task"]).vectors
    model = CLIP.from_state_dict(load_bundle(world.bundle).state_dict).eval()
    with torch.no_grad():
        latent = model.encode_text(torch.from_numpy(l2_normalise(vector))).numpy()[0]
    scores = index.studies.text_latents @ latent
    assert match.studies["study_id"].tolist() == index.studies.study_ids[np.argsort(-scores)[:3]].tolist()
    train = index.studies.folds == "train"
    assert train.sum() == 20
    ridge = fit_ridge(index.studies.text_latents[train], index.studies.coefficients[train], n_folds=5)
    assert index.ridge.alpha == ridge.alpha
    np.testing.assert_allclose(match.coefficients, ridge.predict(latent[None, :])[0], rtol=1e-6, atol=1e-8)
    mask = load_brain_mask()
    assert match.image.shape == mask.shape
    np.testing.assert_array_equal(match.image.affine, mask.affine)
    assert isinstance(match.image, nib.Nifti1Image) and np.abs(match.image.get_fdata()).max() > 0


def test_text_search_refuses_bad_queries_and_a_tampered_model(world, built):
    _, out = built
    index = Index(out, world.bundle, atlas_dir=world.atlas_dir)
    with pytest.raises(ParameterError, match="query is unusable: empty text"):
        index.search_text("")
    tampered = world.bundle_with("bundle-sha2", text_model_sha256="1" * 64)
    with pytest.raises(InputError, match="another bundle"):
        Index(out, tampered)
    studies = read_index(out)
    studies.meta = {**studies.meta, "bundle_manifest": None}  # same heads; only the recorded model files differ
    other = Index(studies, tampered, atlas_dir=world.atlas_dir)
    with pytest.raises(InputError, match="other files"):
        other.search_text("faces")
