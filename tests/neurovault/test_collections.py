"""NeuroVault layout reading on nilearn's real motor map, and the decode manifest builder."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.decoding.map_files import collect_maps, load_item
from niclip_ray.errors import InputError
from niclip_ray.neurovault import find_collection, read_collection


@pytest.fixture
def nv_dir(tmp_path):
    """nilearn's layout: neurovault/collection_658 with the real image 10426 and its metadata."""
    coll = tmp_path / "neurovault" / "collection_658"
    coll.mkdir(parents=True)
    shutil.copy(load_sample_motor_activation_image(), coll / "image_10426.nii.gz")
    (coll / "image_10426_metadata.json").write_text(
        json.dumps({"id": 10426, "name": "task001 left vs right motor", "map_type": "T map", "collection_id": 658})
    )
    (coll / "collection_metadata.json").write_text(json.dumps({"id": 658}))
    return tmp_path


def test_read_collection(nv_dir):
    (image,) = read_collection(nv_dir / "neurovault" / "collection_658")
    assert image.map_id == "collection_658/image_10426"
    assert image.metadata == {"name": "task001 left vs right motor", "map_type": "T map"}
    assert nib.load(image.path).shape == (53, 63, 46)


def test_find_collection_offline(nv_dir):
    assert find_collection(658, nv_dir) == nv_dir / "neurovault" / "collection_658"
    assert find_collection("658", nv_dir / "neurovault").name == "collection_658"
    with pytest.raises(InputError, match="collection 457 is not in .*--download"):
        find_collection(457, nv_dir)


def test_empty_collection_is_an_error(tmp_path):
    (tmp_path / "collection_1").mkdir()
    with pytest.raises(InputError, match="holds no image"):
        read_collection(tmp_path / "collection_1")


def test_collect_maps_mixes_sources(nv_dir, tmp_path):
    img = nib.load(load_sample_motor_activation_image())
    maps = tmp_path / "maps"
    (maps / "sub").mkdir(parents=True)
    nib.save(img, maps / "a.nii.gz")
    nib.save(img, maps / "sub" / "a.nii")
    four_d = np.stack([np.asarray(img.dataobj)] * 3, axis=-1)
    nib.save(nib.Nifti1Image(four_d, img.affine), tmp_path / "run.nii.gz")
    (tmp_path / "notes.txt").write_text("not an image")
    items = collect_maps([maps, tmp_path / "run.nii.gz", tmp_path / "notes.txt"], collections=[658],
                         neurovault_dir=nv_dir)
    ids = [i["map_id"] for i in items]
    assert ids == ["collection_658/image_10426", "maps/a", "maps/sub/a", "notes", "run:0", "run:1", "run:2"]
    nv = items[0]
    assert nv["name"] == "task001 left vs right motor" and nv["volume"] == -1
    run1 = next(i for i in items if i["map_id"] == "run:1")
    vol = load_item(run1)
    assert vol.shape == img.shape and np.allclose(vol.get_fdata(), img.get_fdata(), atol=1e-4)


def test_collect_maps_errors(tmp_path):
    with pytest.raises(InputError, match="no maps given"):
        collect_maps([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .nii"):
        collect_maps([tmp_path / "empty"])
    same = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), same)
    with pytest.raises(InputError, match="given twice"):
        collect_maps([same, same])


def test_fetch_guards_nilearns_silent_empty_result(tmp_path, monkeypatch):
    """nilearn's fetcher logs a network error and returns an empty Bunch; that must be an error."""
    import nilearn.datasets
    from sklearn.utils import Bunch

    calls = []

    def empty(collection_ids, data_dir, verbose):
        calls.append((collection_ids, data_dir))
        return Bunch(images=[], images_meta=[])

    monkeypatch.setattr(nilearn.datasets, "fetch_neurovault_ids", empty)
    with pytest.raises(InputError, match="collection 457 returned no image"):
        find_collection(457, tmp_path, download=True)
    assert calls == [([457], str(tmp_path))]

    def broken(collection_ids, data_dir, verbose):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(nilearn.datasets, "fetch_neurovault_ids", broken)
    with pytest.raises(InputError, match="could not fetch NeuroVault collection 457: no route"):
        find_collection(457, tmp_path, download=True)
