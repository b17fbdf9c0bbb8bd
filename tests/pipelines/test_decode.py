"""Batch decoding: the pure shard function, then the Ray stage with bad maps and resume."""

import gzip
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.decoding.schema import DECODE_SCHEMA
from niclip_ray.errors import InputError
from niclip_ray.pipelines import decode
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    bundle = toy_bundle(root / "bundle", root / "atlas")
    img = nib.load(load_sample_motor_activation_image())
    data = np.asarray(img.dataobj, dtype=np.float32)
    maps = root / "maps"
    maps.mkdir()
    nib.save(img, maps / "motor.nii.gz")
    nib.save(nib.Nifti1Image(-data, img.affine), maps / "flipped.nii.gz")
    nib.save(nib.Nifti1Image((data > 2).astype(np.int16), img.affine), maps / "integer.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([data, 2 * data], axis=-1), img.affine), maps / "pair.nii.gz")
    (maps / "truncated.nii.gz").write_bytes(gzip.compress(gzip.decompress((maps / "motor.nii.gz").read_bytes()))[:4000])
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine), maps / "nan.nii.gz")
    nib.save(nib.Nifti1Image(data[:, :, 20], img.affine), maps / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), maps / "zero.nii.gz")
    far = img.affine.copy()
    far[:3, 3] += 5000
    nib.save(nib.Nifti1Image(data, far), maps / "elsewhere.nii.gz")
    (maps / "readme.nii").write_text("this is not a NIfTI file")
    nib.save(nib.Nifti1Image(np.ones((*img.shape, 2, 2), np.float32), img.affine), maps / "five_d.nii.gz")
    nib.save(nib.Nifti1Image((data > 2).astype(np.uint8), img.affine), maps / "mask_u8.nii.gz")
    with_inf = data.copy()
    with_inf[data < -3] = np.inf
    nib.save(nib.Nifti1Image(with_inf, img.affine), maps / "with_inf.nii.gz")
    return bundle, root / "atlas", maps


GOOD = {"motor", "flipped", "integer", "pair:0", "pair:1", "mask_u8", "with_inf"}
BAD = {
    "truncated": "corrupt or truncated|not a readable",
    "nan": "NaN or infinite",
    "flat": "3-D",
    "zero": "no signal on the atlas",
    "elsewhere": "MNI",
    "readme": "not a readable NIfTI",
    "five_d": "3-D",
}


def test_decode_items_without_ray(setup):
    bundle, atlas, maps = setup
    decoder = Decoder(bundle, atlas_dir=atlas, topk=3)
    items = collect_maps([maps])
    table = decode.decode_items(decoder, items).to_pandas()
    assert table.columns.tolist() == DECODE_SCHEMA.names
    errors = table[table["error"].notna()].set_index("map_id")["error"]
    assert set(errors.index) == set(BAD)
    for map_id, pattern in BAD.items():
        assert pd.Series([errors[map_id]]).str.contains(pattern).all(), (map_id, errors[map_id])
        assert map_id in errors[map_id]
    good = table[table["error"].isna()]
    assert set(good["map_id"]) == GOOD
    assert good.groupby(["map_id", "level"]).size().unstack().to_dict("list") == {
        "concept": [3] * len(GOOD), "domain": [10] * len(GOOD), "task": [3] * len(GOOD)}
    single = decoder.transform(maps / "motor.nii.gz")
    got = good[good["map_id"] == "motor"].reset_index(drop=True)
    np.testing.assert_allclose(got["prob"], single["prob"], rtol=1e-6)  # float32 batch vs single matmul
    assert (got["term"] == single["term"]).all()
    assert (good["atlas_id"] == "toy-difumo64-8mm-standin-seed0").all()
    # volume 1 is twice volume 0: the projection scales, the normalised decoding does not change
    p0 = good[good["map_id"] == "pair:0"]["prob"].to_numpy()
    p1 = good[good["map_id"] == "pair:1"]["prob"].to_numpy()
    np.testing.assert_allclose(p0, p1, rtol=1e-5)


def test_stage_with_bad_maps_and_resume(setup, ray_local, tmp_path):
    bundle, atlas, maps = setup
    items = collect_maps([maps])
    out = tmp_path / "decode"
    summary = decode.run(items, bundle, out, topk=2, atlas_dir=atlas, shard_size=4, num_actors=2)
    assert summary.n_shards == 4 and summary.n_skipped == 0 and not summary.failed_shards
    assert summary.n_failed_rows == len(BAD)
    assert summary.n_ok_rows == len(GOOD) * (2 + 2 + 10)
    first = read_parts(out).to_pandas()
    (out / "part-00001.parquet").unlink()
    again = decode.run(items, bundle, out, topk=2, atlas_dir=atlas, shard_size=4, num_actors=1)
    assert again.n_skipped == 3 and again.n_rows == summary.n_rows
    second = read_parts(out).to_pandas()
    pd.testing.assert_frame_equal(first, second)
    assert not second.duplicated(["map_id", "level", "rank"]).any()
    with pytest.raises(InputError, match="resume needs the same"):
        decode.run(items, bundle, out, topk=5, atlas_dir=atlas, shard_size=4)


def test_parts_keep_a_collection_maps_metadata_and_older_parts_still_read(setup, tmp_path):
    bundle, atlas, maps = setup
    coll = tmp_path / "collection_9"
    coll.mkdir()
    (coll / "image_4.nii.gz").write_bytes((maps / "motor.nii.gz").read_bytes())
    (coll / "image_4_metadata.json").write_text(json.dumps({"name": "motor", "contrast_definition_cogatlas": "L>R"}))
    (coll / "image_6.nii.gz").write_bytes((maps / "flipped.nii.gz").read_bytes())  # no metadata file
    decoder = Decoder(bundle, atlas_dir=atlas, topk=2, hierarchical=False)
    new = decode.decode_items(decoder, collect_maps([coll, maps / "motor.nii.gz"]))
    columns = ["collection_id", "image_id", "name", "contrast"]
    info = {row["map_id"]: {c: row[c] for c in columns} for row in new.to_pylist()}
    assert info == {
        "collection_9/image_4": {"collection_id": "9", "image_id": "4", "name": "motor", "contrast": "L>R"},
        "collection_9/image_6": {"collection_id": "9", "image_id": "6", "name": None, "contrast": None},
        "motor": {"collection_id": None, "image_id": None, "name": None, "contrast": None}}
    out = tmp_path / "decode"
    out.mkdir()
    old = new.drop_columns(columns)  # a part from before these columns
    pq.write_table(old, out / "part-00000.parquet")
    pq.write_table(new, out / "part-00001.parquet")
    both = read_parts(out)["collection_id"].to_pylist()
    assert both == [None] * old.num_rows + new["collection_id"].to_pylist()
