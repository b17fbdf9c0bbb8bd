"""A NeuroVault map whose metadata cannot be read is decoded, with a warning naming the file.

Today: one ``image_*_metadata.json`` nested 200,000 deep (RecursionError) or holding
Latin-1 bytes (UnicodeDecodeError) stops the whole decode with "unexpected ..." and no
file named: 0 of 2 maps decoded.
"""

import shutil

from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.main import run
from niclip_ray.neurovault import read_collection
from niclip_ray.tables import read_parts

DEEP = b"[" * 200_000 + b"]" * 200_000
LATIN1 = '{"name": "réponse motrice"}'.encode("latin-1")


def collection(root):
    """collection_7 with the motor map twice: image_1's metadata too deep, image_2's in Latin-1."""
    folder = root / "collection_7"
    folder.mkdir()
    for image_id, metadata in ((1, DEEP), (2, LATIN1)):
        shutil.copy(load_sample_motor_activation_image(), folder / f"image_{image_id}.nii.gz")
        (folder / f"image_{image_id}_metadata.json").write_bytes(metadata)
    return folder


def test_unreadable_metadata_is_a_warning_naming_the_file(tmp_path):
    folder = collection(tmp_path)
    images = read_collection(folder)
    assert [image.metadata for image in images] == [{}, {}]
    assert "RecursionError" in images[0].warning and str(folder / "image_1_metadata.json") in images[0].warning
    assert "UnicodeDecodeError" in images[1].warning and str(folder / "image_2_metadata.json") in images[1].warning


def test_decode_keeps_maps_whose_metadata_is_unreadable(tmp_path, capsys):
    folder = collection(tmp_path)
    bundle = toy_bundle(tmp_path / "bundle", tmp_path / "atlas")
    argv = ["decode", str(folder), "--model", str(bundle), "--atlas-dir", str(tmp_path / "atlas"),
            "--tasks-only", "--topk", "2", "--standin", "--out", str(tmp_path / "out")]
    assert run(argv) == 0  # today: 1, "error: unexpected RecursionError: maximum recursion depth exceeded ..."
    printed = capsys.readouterr()
    assert "2 maps ok, 0 failed" in printed.out
    for image_id in (1, 2):
        assert f"warning: map collection_7/image_{image_id}: cannot read its NeuroVault metadata " \
               f"{folder / f'image_{image_id}_metadata.json'}" in printed.err
    rows = read_parts(tmp_path / "out" / "decode").to_pandas()
    assert rows["error"].isna().all()
    assert rows.groupby("map_id")["warning"].first().str.contains("NeuroVault metadata").all()
