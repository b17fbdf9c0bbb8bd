"""``Decoder.transform`` decodes what ``niclip-ray decode`` decodes: 4-D files, directories and
NeuroVault collections, a bad map as an error row, ``topk="all"``, ids that do not depend on
how a file was named, and a collection map's metadata."""

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.model.bundle import load_bundle


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("transform")
    decoder = Decoder(toy_bundle(root / "bundle", root / "atlas"), atlas_dir=root / "atlas", topk=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in atlas note, once per decoder
        decoder.transform(load_sample_motor_activation_image())
    return decoder


@pytest.fixture(scope="module")
def motor():
    img = nib.load(load_sample_motor_activation_image())
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def probs(frame, map_id):
    return frame.loc[frame["map_id"] == map_id, ["level", "term", "prob"]].reset_index(drop=True)


def test_4d_files_directories_and_collections(decoder, motor, tmp_path):
    data, affine = motor
    maps = tmp_path / "maps"
    maps.mkdir()
    nib.save(nib.Nifti1Image(data, affine), maps / "a.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([data, -data], axis=-1), affine), maps / "run.nii.gz")
    coll = tmp_path / "collection_12"
    coll.mkdir()
    nib.save(nib.Nifti1Image(-data, affine), coll / "image_5.nii.gz")
    (coll / "image_5_metadata.json").write_text(json.dumps({"name": "left vs right", "contrast_definition": "L - R"}))
    flipped = nib.Nifti1Image(-data, affine)
    frame = decoder.transform([maps, coll, nib.Nifti1Image(np.stack([data, -data], axis=-1), affine)],
                              names="pair")
    assert set(frame["map_id"]) == {"a", "run:0", "run:1", "collection_12/image_5", "pair:0", "pair:1"}
    assert frame["error"].isna().all() and (frame["warning"] == "").all()
    alone = decoder.transform(nib.Nifti1Image(data, affine))
    alone_flipped = decoder.transform(flipped)
    for map_id, expected in (("a", alone), ("run:0", alone), ("pair:0", alone), ("run:1", alone_flipped),
                             ("pair:1", alone_flipped), ("collection_12/image_5", alone_flipped)):
        got, want = probs(frame, map_id), probs(expected, "map")
        assert got[["level", "term"]].equals(want[["level", "term"]]), map_id
        np.testing.assert_allclose(got["prob"], want["prob"], rtol=1e-5, err_msg=map_id)  # float32 batches
    nv = frame[frame["map_id"] == "collection_12/image_5"].drop_duplicates("map_id").iloc[0]
    assert (nv["collection_id"], nv["image_id"], nv["name"], nv["contrast"]) == ("12", "5", "left vs right", "L - R")
    assert nv["source_path"] == str((coll / "image_5.nii.gz").absolute())
    others = frame[frame["map_id"] != "collection_12/image_5"]
    assert others[["collection_id", "image_id", "name", "contrast"]].isna().all().all()
    assert frame.loc[frame["map_id"] == "run:1", "source_path"].eq(str((maps / "run.nii.gz").absolute())).all()


def test_a_bad_map_is_an_error_row_unless_errors_raise(decoder, motor, tmp_path):
    data, affine = motor
    maps = tmp_path / "maps"
    maps.mkdir()
    nib.save(nib.Nifti1Image(data, affine), maps / "good.nii.gz")
    (maps / "bad.nii.gz").write_bytes(b"not a NIfTI")
    zero = nib.Nifti1Image(np.zeros_like(data), affine)
    frame = decoder.transform([maps, zero], names=["zero"])
    failed = frame[frame["error"].notna()].set_index("map_id")
    assert sorted(failed.index) == ["bad", "zero"]
    assert failed.loc["bad", "error"].startswith(f"map bad ({maps / 'bad.nii.gz'}): not a readable NIfTI")
    assert failed.loc["zero", "error"] == "map zero: no signal on the atlas (all zero inside the atlas after resampling)"
    assert failed[["level", "rank", "term", "prob"]].isna().all().all()
    good = frame[frame["error"].isna()]
    assert set(good["map_id"]) == {"good"} and good.groupby("level").size().to_dict() == {
        "task": 3, "concept": 3, "domain": 10}
    with pytest.raises(InputError, match="^map bad .*not a readable NIfTI"):
        decoder.transform([maps, zero], names=["zero"], errors="raise")
    with pytest.raises(ParameterError, match="errors must be one of rows, raise, got 'ignore'"):
        decoder.transform(zero, errors="ignore")


def test_topk_all_keeps_every_task_and_concept(decoder):
    every = Decoder(decoder.bundle, topk="all", projector=decoder.projector)
    assert every.topk is None and every.get_params()["topk"] is None
    frame = every.transform(load_sample_motor_activation_image())
    sizes = frame.groupby("level").size().to_dict()
    bundle = load_bundle(decoder.bundle.path)
    assert sizes == {"task": len(bundle.vocabulary), "concept": len(bundle.ontology.concepts),
                     "domain": len(bundle.ontology.domains)}
    for bad in ("some", 0, 2.5):
        with pytest.raises(ParameterError, match="^topk must be"):
            Decoder(decoder.bundle, topk=bad)


def test_ids_are_file_names_whether_the_file_or_its_folder_is_named(tmp_path, motor):
    data, affine = motor
    for relative in ("d/a.nii.gz", "d/b.nii", "d/sub/b.nii.gz", "e/b.nii.gz", "collection_3/image_7.nii.gz"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), tmp_path / relative)
    def ids(*sources):
        return [i["map_id"] for i in collect_maps([tmp_path / s for s in sources])]

    assert ids("d/a.nii.gz") == ["a"] and ids("d")[0] == "a"
    assert ids("d/sub/b.nii.gz") == ids("d/sub") == ["b"]
    assert ids("d") == ["a", "d/b", "d/sub/b"]  # two maps named b keep their paths
    assert ids("d/sub", "e") == ["e/b", "sub/b"]
    assert ids("d/sub/b.nii.gz", "e") == [str(tmp_path / "d" / "sub" / "b"), "e/b"]
    assert ids("collection_3", "d/a.nii.gz") == ["a", "collection_3/image_7"]
    with pytest.raises(InputError, match="given twice"):
        ids("d/a.nii.gz", "d/a.nii.gz")
