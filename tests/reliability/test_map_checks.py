"""Maps are checked for space and size before they are decoded, and every file gets its row.

Today: a map with no sform/qform, or shifted 150 mm off MNI, decodes with no warning; a
416-byte header claiming 1450^3 voxels makes a worker allocate 12.5 GB; values near
float32's maximum read "no signal"; broken or looping links are dropped with no row; CSV
names collide; the decode summary counts prediction rows; partial failure exits 0 silently.
"""

import os
import resource

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_to_img

from niclip_ray._testing import toy_bundle
from niclip_ray.cli.main import run
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.export import write_csvs
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.pipelines import decode
from niclip_ray.tables import read_parts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("map-checks")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


@pytest.fixture(scope="module")
def decoder(bundle):
    path, atlas = bundle
    return Decoder(path, atlas_dir=atlas, topk=3)


@pytest.fixture(scope="module")
def motor():
    img = nib.load(load_sample_motor_activation_image())
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def decoded(decoder, paths, strict=False):
    """map_id -> (error, warning) of every map of ``paths``, without Ray."""
    table = decode.decode_items(decoder, collect_maps(paths), strict=strict).to_pandas()
    return {row.map_id: ("" if pd.isna(row.error) else row.error, row.warning)
            for row in table.drop_duplicates("map_id").itertuples()}


def mask_fraction(img, decoder):
    """Oracle: the share of the bundle's brain mask that a map's grid reaches (nilearn resampling)."""
    mask = nib.load(str(decoder.bundle.mask_path))
    ones = nib.Nifti1Image(np.ones(img.shape, np.float32), img.affine)
    reached = np.asarray(resample_to_img(ones, mask, interpolation="nearest", force_resample=True,
                                         copy_header=True).dataobj)
    inside = np.asarray(mask.dataobj) > 0
    return float((reached[inside] > 0).mean())


def test_no_sform_or_qform_gives_a_warning_or_a_strict_error(decoder, motor, tmp_path):
    data, affine = motor
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=0)
    img.set_qform(affine, code=0)
    nib.save(img, tmp_path / "bare.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "placed.nii.gz")
    rows = decoded(decoder, [tmp_path / "bare.nii.gz", tmp_path / "placed.nii.gz"])
    error, warning = rows["bare"]
    assert error == "" and warning.startswith("no sform or qform in its header: placed by nibabel's fallback affine")
    assert rows["placed"] == ("", "")
    strict = decoded(decoder, [tmp_path / "bare.nii.gz", tmp_path / "placed.nii.gz"], strict=True)
    assert strict["bare"][0].startswith("map bare: no sform or qform") and "refused under --strict" in strict["bare"][0]
    assert strict["placed"] == ("", "")


def test_partial_mni_overlap_states_the_fraction(decoder, motor, tmp_path):
    data, affine = motor
    shifted = affine.copy()
    shifted[0, 3] += 60.0
    img = nib.Nifti1Image(data, shifted)
    nib.save(img, tmp_path / "shifted.nii.gz")
    error, warning = decoded(decoder, [tmp_path / "shifted.nii.gz"])["shifted"]
    assert error == ""
    fraction = float(warning.split("covers ")[1].split("%")[0]) / 100
    assert fraction == pytest.approx(mask_fraction(img, decoder), abs=0.02) and 0.2 < fraction < 0.8
    strict_error, _ = decoded(decoder, [tmp_path / "shifted.nii.gz"], strict=True)["shifted"]
    assert "of the brain mask; is it in MNI space? (refused under --strict)" in strict_error


@pytest.mark.parametrize("side", [1450, 2000])
def test_a_header_claiming_huge_data_is_refused_before_reading(decoder, tmp_path, side):
    header = nib.Nifti1Header()
    header.set_data_shape((side, side, side))
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    header["vox_offset"] = 352
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)  # 416 bytes
    assert path.stat().st_size == 416
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error, _ = decoded(decoder, [path])["huge"]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    gib = side**3 * 8 / 1024**3
    assert error == (f"map huge: its header claims {side}x{side}x{side} voxels of float32, {gib:.1f} GiB in memory, "
                     "over the 2 GiB limit per map; nothing was read")
    assert grown_mib < 200


def test_values_near_float32_max_are_an_overflow_not_no_signal(decoder, motor, tmp_path):
    data, affine = motor
    big = data / np.abs(data).max() * np.float32(3.0e38)
    nib.save(nib.Nifti1Image(big.astype(np.float32), affine), tmp_path / "big.nii.gz")
    error, _ = decoded(decoder, [tmp_path / "big.nii.gz"])["big"]
    assert error.startswith(f"map big ({tmp_path / 'big.nii.gz'}): values reach 3e+38, near float32's maximum "
                            "(3.4e+38); the map overflowed (rescale it)")


def test_broken_and_looping_links_each_get_an_error_row(decoder, motor, tmp_path):
    data, affine = motor
    maps = tmp_path / "maps"
    maps.mkdir()
    nib.save(nib.Nifti1Image(data, affine), maps / "good.nii.gz")
    os.symlink(tmp_path / "gone.nii.gz", maps / "broken.nii.gz")
    os.symlink(maps / "loop.nii", maps / "loop.nii")
    rows = decoded(decoder, [maps])
    assert sorted(rows) == ["broken", "good", "loop"]
    assert rows["good"] == ("", "")
    assert rows["broken"][0] == (f"map broken: broken symbolic link ({maps / 'broken.nii.gz'} -> "
                                 f"{tmp_path / 'gone.nii.gz'}: No such file or directory)")
    assert rows["loop"][0] == f"map loop: symbolic link loop ({maps / 'loop.nii'} -> {maps / 'loop.nii'})"

    only = tmp_path / "only-links"
    only.mkdir()
    os.symlink(tmp_path / "gone.nii.gz", only / "a.nii.gz")
    os.symlink(tmp_path / "gone.nii", only / "b.nii")
    items = collect_maps([only])  # not "holds no .nii or .nii.gz file"
    assert [(i["map_id"], i["input_error"].split(" (")[0]) for i in items] == [
        ("a", "broken symbolic link"), ("b", "broken symbolic link")]


def test_csv_names_are_unique_when_safe_names_collide(tmp_path):
    rows = []
    for map_id in ("d/a/m", "d/a_m", "d/a m", "other"):
        for level in ("task", "concept", "domain"):
            rows.append({"map_id": map_id, "level": level, "rank": 1, "term": "t", "prob": 0.5, "similarity": 0.1,
                         "likelihood": 0.2, "prior": 0.3, "bayes_factor": 1.0, "error": ""})
    written = write_csvs(pd.DataFrame(rows), tmp_path)
    assert len(written) == 12 and len(set(written)) == 12
    assert len(list(tmp_path.glob("*.csv"))) == 12  # today: 6 (the three d_a_m maps overwrite each other)
    assert (tmp_path / "other_task_predictions.csv").is_file()


def test_decode_cli_counts_maps_flags_failures_and_fails_on_request(bundle, motor, ray_local, tmp_path, capsys):
    path, atlas = bundle
    data, affine = motor
    maps = tmp_path / "maps"
    maps.mkdir()
    for name, scale in (("a", 1.0), ("b", -1.0), ("c", 2.0)):
        nib.save(nib.Nifti1Image(scale * data, affine), maps / f"{name}.nii.gz")
    (maps / "bad.nii.gz").write_bytes(b"not a NIfTI")
    argv = ["decode", str(maps), "--model", str(path), "--atlas-dir", str(atlas), "--tasks-only", "--topk", "2", "--standin"]
    assert run([*argv, "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr()
    assert "decode: 3 maps ok, 1 failed in 1 shards" in printed.out  # today: "6 ok, 1 failed rows"
    assert "FAILED: 1 of 4 maps (error column of" in printed.err
    assert "3 CSV files" in printed.out

    assert run([*argv, "--out", str(tmp_path / "strict"), "--fail-on-error"]) == 1
    printed = capsys.readouterr()
    assert "1 of 4 maps failed (--fail-on-error)" in printed.err
    assert read_parts(tmp_path / "strict" / "decode").num_rows == 3 * 2 + 1  # the work is kept

    # overwrite one map in place: the rerun decodes it again instead of serving old rows
    before = read_parts(tmp_path / "o" / "decode").to_pandas()
    nib.save(nib.Nifti1Image(-data, affine), maps / "a.nii.gz")
    assert run([*argv, "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr()
    assert "recomputed 1 shards whose inputs changed (a)" in printed.out
    after = read_parts(tmp_path / "o" / "decode").to_pandas()
    a_now = after[after.map_id == "a"].reset_index(drop=True)
    b_then = before[before.map_id == "b"].reset_index(drop=True)
    assert a_now["term"].tolist() == b_then["term"].tolist()  # a now holds b's map
    np.testing.assert_allclose(a_now["prob"], b_then["prob"], rtol=1e-6)


def test_control_characters_in_map_names_are_printed_escaped(bundle, motor, tmp_path, capsys):
    path, atlas = bundle
    data, affine = motor
    good = tmp_path / "red\x1b[31mmap.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), good)
    bad = tmp_path / "nul\x07bell.nii.gz"
    bad.write_bytes(b"not a NIfTI")
    argv = ["decode", str(good), str(bad), "--model", str(path), "--atlas-dir", str(atlas), "--topk", "2",
            "--standin", "--out", str(tmp_path / "o")]
    assert run(argv) == 0
    printed = capsys.readouterr()
    assert "\x1b" not in printed.out + printed.err and "\x07" not in printed.out + printed.err
    assert "red\\x1b[31mmap: top predictions" in printed.out and "nul\\x07bell" in printed.err
