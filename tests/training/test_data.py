"""Joining image and text feature tables on study_id."""

import numpy as np
import pytest

from niclip_ray.errors import InputError
from niclip_ray.training.data import load_pairs


def test_join_skips_failed_rows_and_reports_one_sided_studies(tmp_path, write_features):
    rng = np.random.default_rng(0)
    ids = [f"s{i:02d}" for i in range(10)]
    images, texts = rng.standard_normal((10, 4)) * 5, rng.standard_normal((10, 6))
    img_dir, txt_dir = write_features(tmp_path, images, texts, ids, image_errors={"s03": "no peaks"},
                                      text_errors={"s07": "empty body"})
    # a study with text features only
    extra = write_features(tmp_path / "more", rng.standard_normal((1, 4)), rng.standard_normal((1, 6)), ["zz"], parts=1)
    (txt_dir / "part-00009.parquet").write_bytes((extra[1] / "part-00000.parquet").read_bytes())
    pairs = load_pairs(img_dir, txt_dir, section="body")
    assert pairs.study_ids == [s for s in ids if s not in ("s03", "s07")]
    assert pairs.image_only == ["s07"] and pairs.text_only == ["s03", "zz"]
    assert (pairs.failed_images, pairs.failed_texts) == (1, 1)
    assert pairs.text_model_id == "tiny-llm"
    np.testing.assert_allclose(np.linalg.norm(pairs.images, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pairs.texts, axis=1), 1.0, rtol=1e-6)
    i = ids.index("s05")
    np.testing.assert_allclose(pairs.images[pairs.study_ids.index("s05")], images[i] / np.linalg.norm(images[i]), rtol=1e-5)
    np.testing.assert_allclose(pairs.texts[pairs.study_ids.index("s05")], texts[i] / np.linalg.norm(texts[i]), rtol=1e-5)


def test_clear_errors_name_the_input(tmp_path, write_features):
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c"]
    img_dir, txt_dir = write_features(tmp_path, rng.standard_normal((3, 4)), rng.standard_normal((3, 6)), ids)
    with pytest.raises(InputError, match="no section 'abstract'"):
        load_pairs(img_dir, txt_dir, section="abstract")
    with pytest.raises(InputError, match="does not exist"):
        load_pairs(tmp_path / "nope", txt_dir)
    other = write_features(tmp_path / "o", rng.standard_normal((2, 4)), rng.standard_normal((2, 6)), ["x", "y"])
    with pytest.raises(InputError, match="no study has both"):
        load_pairs(other[0], txt_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no part"):
        load_pairs(tmp_path / "empty", txt_dir)


def test_non_finite_or_zero_vectors_without_an_error_are_skipped(tmp_path, write_features):
    rng = np.random.default_rng(2)
    images, texts = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    images[1, 0] = np.nan
    texts[2] = 0.0
    img_dir, txt_dir = write_features(tmp_path, images, texts, ["a", "b", "c", "d"])
    pairs = load_pairs(img_dir, txt_dir)
    assert pairs.study_ids == ["a", "d"]
    assert (pairs.failed_images, pairs.failed_texts) == (1, 1)
    assert pairs.text_only == ["b"] and pairs.image_only == ["c"]
