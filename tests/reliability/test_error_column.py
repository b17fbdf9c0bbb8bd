"""One convention for the ``error`` column of every part file: null for a good row.

Before: decode parts held null for a good row but image-feature, text-feature, index and
search parts held "" (and so did the shards' own results). Parts written before the change
keep "" and must still read as good.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from niclip_ray._testing import toy_state_dict
from niclip_ray.atlas.difumo import build_standin, default_standin_dir, load_atlas
from niclip_ray.atlas.projection import get_projector
from niclip_ray.errors import InputError
from niclip_ray.features.text import EmbeddingResult
from niclip_ray.model import CLIP
from niclip_ray.pipelines.images import process_studies
from niclip_ray.pipelines.index import search_items
from niclip_ray.pipelines.shards import count_rows, run_shard
from niclip_ray.pipelines.text import process_texts
from niclip_ray.retrieval.table import index_rows
from niclip_ray.tables import read_parts, tensor_array
from niclip_ray.training.data import load_pairs


class TwoDimEmbedder:
    """A text embedder stand-in: 2-d vectors, "" for an embedded text."""

    dim, model_id = 2, "stub"

    def embed(self, texts, on_done=None):
        return EmbeddingResult(np.ones((len(texts), 2), np.float32), np.ones(len(texts), np.int64), [""] * len(texts))


class OneMapIndex:
    """A study index stand-in: finds one study for map ``good`` and refuses any other."""

    def search_image(self, img, top_k, against, name):
        if name != "good":
            raise InputError(f"map {name}: no signal")
        return pd.DataFrame({"query": [name], "rank": [1], "study_id": ["s1"], "pmid": ["1"], "title": ["t"],
                             "score": [0.5]})


def test_every_stage_writes_null_for_a_good_row(tmp_path):
    build_standin(default_standin_dir(0), 64, seed=0)
    projector = get_projector(load_atlas(64, data_dir=default_standin_dir(0)))
    images = process_studies([{"study_id": "a", "coords": [[-40.0, 20.0, -10.0]]}, {"study_id": "b", "coords": []}],
                             projector)
    assert images["error"].to_pylist() == [None, "no peaks"]  # before: ["", "no peaks"]

    texts = process_texts([{"study_id": "a", "text": "words", "input_error": ""},
                           {"study_id": "b", "text": None, "input_error": "no body text"}], TwoDimEmbedder(), "body")
    assert texts["error"].to_pylist() == [None, "no body text"]

    pq.write_table(images, tmp_path / "images.parquet")
    pq.write_table(pa.table({"embedding": tensor_array(np.ones((1, 32), np.float32))}), tmp_path / "text.parquet")
    items = [{"study_id": "a", "pmid": "1", "title": "t", "fold": "none", "input_error": "",
              "image": (str(tmp_path / "images.parquet"), 0), "text": (str(tmp_path / "text.parquet"), 0)},
             {"study_id": "b", "pmid": "2", "title": "u", "fold": "none", "input_error": "no usable image features",
              "image": None, "text": None}]
    index = index_rows(items, CLIP.from_state_dict(toy_state_dict(32, 64)).eval())
    assert index["error"].to_pylist() == [None, "no usable image features"]

    maps = [{"map_id": name, "source_path": f"{name}.nii.gz"} for name in ("good", "bad")]
    assert search_items(OneMapIndex(), maps, 1, "text")["error"].to_pylist() == [None, "map bad: no signal"]

    def process(shard):
        return pa.table({"id": [item["id"] for item in shard], "error": pa.array([None], pa.string())})

    assert run_shard(process, 0, [{"id": "x"}], tmp_path / "stage")["error"] is None  # before: ""


def old_and_new_parts(directory, embedding_dim=2, section=None):
    """Two image- or text-feature parts: the old one says "" for a good row, the new one null."""
    directory.mkdir()
    for number, (ids, errors) in enumerate([(["a", "b"], ["", "no peaks"]), (["c", "d"], [None, "no peaks"])]):
        columns = {"study_id": ids, "embedding": tensor_array(np.ones((2, embedding_dim), np.float32)),
                   "error": pa.array(errors, pa.string())}
        if section is not None:
            columns.update(section=[section] * 2, model_id=["stub"] * 2)
        pq.write_table(pa.table(columns), directory / f"part-{number:05d}.parquet")
    return directory


def test_old_parts_with_empty_errors_read_as_good(tmp_path):
    images = old_and_new_parts(tmp_path / "images")
    assert read_parts(images)["error"].to_pylist() == [None, "no peaks", None, "no peaks"]
    assert count_rows(images, "study_id") == (4, 2, 4, 2)
    pairs = load_pairs(images, old_and_new_parts(tmp_path / "text", section="body"), "body")
    assert sorted(pairs.study_ids) == ["a", "c"]
