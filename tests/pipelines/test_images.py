"""The images stage on real shipped studies: rows, bad studies, resume after loss or failure."""

import functools

import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMasker
from nimare.meta.kernel import MKDAKernel

from niclip_ray.atlas.difumo import build_standin, default_standin_dir, load_atlas
from niclip_ray.atlas.mask import brain_mask_grid, load_brain_mask
from niclip_ray.atlas.projection import atlas_matrix, get_projector, project
from niclip_ray.corpus import ingest
from niclip_ray.errors import InputError
from niclip_ray.pipelines import images
from niclip_ray.pipelines.shards import run_stage
from niclip_ray.tables import read_parts, tensor_to_numpy

N_REAL = 21
SHARD = 8
BAD = {"zz-empty": "no peaks", "zz-far": "no peak sphere reaches", "zz-nan": "NaN or infinite"}


@pytest.fixture(scope="module")
def atlas_dir():
    build_standin(default_standin_dir(0), 64, seed=0)
    return default_standin_dir(0)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """21 real n-back/flanker studies plus three bad ones, in the corpus contract."""
    full, _ = ingest("nimare:nback_vs_flanker", tmp_path_factory.mktemp("full"))
    keep = full.studies["study_id"].iloc[:N_REAL].tolist()
    studies = full.studies[full.studies["study_id"].isin(keep)]
    extra = studies.iloc[:3].copy()
    extra["study_id"] = list(BAD)
    studies = pd.concat([studies, extra], ignore_index=True)
    coords = full.coordinates[full.coordinates["study_id"].isin(keep)]
    bad = pd.DataFrame(
        {
            "study_id": ["zz-far", "zz-nan", "zz-nan"],
            "analysis_id": ["zz-far-1", "zz-nan-1", "zz-nan-1"],
            "x": np.array([500.0, 10.0, np.nan], dtype=np.float32),
            "y": np.array([500.0, 20.0, 0.0], dtype=np.float32),
            "z": np.array([500.0, 30.0, 0.0], dtype=np.float32),
            "space_in": "MNI",
        }
    )
    out = tmp_path_factory.mktemp("corpus")
    studies.to_parquet(out / "studies.parquet", index=False)
    pd.concat([coords, bad], ignore_index=True).to_parquet(out / "coordinates.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def clean(ray_local, corpus_dir, atlas_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "images"
    summary = images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, shard_size=SHARD, num_actors=1)
    return summary, read_parts(out)


def test_every_study_gets_one_row(clean, corpus_dir):
    summary, table = clean
    ids = table["study_id"].to_pylist()
    assert ids == sorted(pd.read_parquet(corpus_dir / "studies.parquet")["study_id"])
    assert summary.n_shards == 3 and summary.n_rows == N_REAL + 3 and summary.n_failed_rows == 3
    assert set(table["atlas_id"].to_pylist()) == {"difumo64-2mm-standin-seed0"}
    assert str(table.schema.field("embedding").type.value_type) == "float"


def test_bad_studies_get_error_rows(clean):
    frame = clean[1].to_pandas(types_mapper=None).set_index("study_id")
    embeddings = tensor_to_numpy(clean[1]["embedding"])
    for row, study_id in enumerate(clean[1]["study_id"].to_pylist()):
        if study_id in BAD:
            assert BAD[study_id] in frame.loc[study_id, "error"]
            assert np.isnan(embeddings[row]).all() and frame.loc[study_id, "n_voxels"] == 0
        else:
            assert pd.isna(frame.loc[study_id, "error"]) and np.isfinite(embeddings[row]).all()
    assert frame.loc["zz-nan", "n_peaks"] == 2 and frame.loc["zz-empty", "n_peaks"] == 0


def test_embeddings_equal_nimare_maps_projected(clean, corpus_dir, atlas_dir):
    table = clean[1]
    coords = pd.read_parquet(corpus_dir / "coordinates.parquet")
    coords = coords[~coords["study_id"].isin(list(BAD))]
    frame = coords.rename(columns={"study_id": "id"})[["id", "x", "y", "z"]].astype({a: float for a in "xyz"})
    dense = MKDAKernel(r=10, value=1).transform(frame, masker=NiftiMasker(load_brain_mask()).fit(), return_type="array")
    grid = brain_mask_grid()
    full = np.stack([grid.unmask(m).ravel() for m in dense])
    reference = project(full, atlas_matrix(load_atlas(64, data_dir=atlas_dir).maps_path, grid))
    ok = [i for i, s in enumerate(table["study_id"].to_pylist()) if s not in BAD]
    np.testing.assert_allclose(tensor_to_numpy(table["embedding"])[ok], reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["n_voxels"].to_numpy()[ok], (dense > 0).sum(axis=1))


def test_lost_part_file_is_recomputed_alone(ray_local, clean, corpus_dir, atlas_dir, tmp_path):
    out = tmp_path / "images"
    images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, shard_size=SHARD, num_actors=1)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    (out / "part-00001.parquet").unlink()
    summary = images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, shard_size=SHARD, num_actors=1)
    assert summary.n_skipped == 2 and not summary.failed_shards
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert after["part-00000.parquet"] == stamps["part-00000.parquet"]
    assert after["part-00002.parquet"] == stamps["part-00002.parquet"]
    assert read_parts(out).equals(clean[1])


def failing_factory(atlas, radius, value, poison):
    """The images stage's process, except that the shard holding ``poison`` raises."""
    process = images.make_process(atlas, radius, value)

    def run(items):
        if any(item["study_id"] == poison for item in items):
            raise RuntimeError("forced failure")
        return process(items)

    return run


def test_failed_shard_resumes_to_the_clean_rows(ray_local, clean, corpus_dir, atlas_dir, tmp_path):
    out = tmp_path / "images"
    atlas = load_atlas(64, data_dir=atlas_dir)
    items = images.study_items(corpus_dir)
    poison = sorted(item["study_id"] for item in items)[SHARD + 1]  # in shard 1
    first = run_stage(
        images.STAGE,
        items,
        key="study_id",
        out_dir=out,
        factory=functools.partial(failing_factory, atlas, 10.0, 1.0, poison),
        params=images.stage_params(atlas, 10.0, 1.0),
        shard_size=SHARD,
        num_actors=1,
    )
    assert list(first.failed_shards) == [1] and "forced failure" in first.failed_shards[1]
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet", "part-00002.parquet"]
    resumed = images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, shard_size=SHARD, num_actors=1)
    assert resumed.n_skipped == 2 and not resumed.failed_shards
    table = read_parts(out)
    assert table.equals(clean[1])
    assert len(set(table["study_id"].to_pylist())) == table.num_rows


def test_resume_with_other_parameters_is_refused(ray_local, clean, corpus_dir, atlas_dir):
    out = clean[0].out_dir
    with pytest.raises(InputError, match="resume needs the same"):
        images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, shard_size=SHARD, radius=8.0)
    with pytest.raises(InputError, match="radius"):
        images.run(corpus_dir, out, dim=64, atlas_dir=atlas_dir, radius=0.0)


def test_process_studies_without_ray(atlas_dir):
    projector = get_projector(load_atlas(64, data_dir=atlas_dir))
    table = images.process_studies(
        [{"study_id": "a", "coords": [[-40.0, 20.0, -10.0]]}, {"study_id": "b", "coords": []}], projector
    )
    assert table["error"].to_pylist() == [None, "no peaks"]
    embeddings = tensor_to_numpy(table["embedding"])
    assert np.isfinite(embeddings[0]).all() and np.isnan(embeddings[1]).all()
    assert table.column_names == ["study_id", "embedding", "n_peaks", "n_voxels", "atlas_id", "error"]
