"""The vocabulary file: contract columns as fixed-shape tensors, provenance in the schema metadata."""

import json

import numpy as np
import pyarrow.parquet as pq

from niclip_ray._testing import toy_vocabulary
from niclip_ray.model.vocabulary import embedding_matrix, read_vocabulary, read_vocabulary_provenance, write_vocabulary

NAMES = ["n-back task", "flanker task", "stroop task"]


def test_provenance_rides_along_in_the_parquet_metadata(tmp_path):
    vocab = toy_vocabulary(NAMES, text_dim=6)
    provenance = {"model_id": "toy", "alpha": 0.5, "n_documents": 4}
    path = write_vocabulary(vocab, tmp_path / "vocabulary.parquet", provenance=provenance)
    assert json.loads(pq.read_schema(path).metadata[b"niclip.vocabulary"]) == provenance
    assert read_vocabulary_provenance(path) == provenance
    again = read_vocabulary(path)
    assert again["name"].tolist() == NAMES
    np.testing.assert_array_equal(embedding_matrix(again, "names"), embedding_matrix(vocab, "names"))

    plain = write_vocabulary(vocab, tmp_path / "plain.parquet")
    assert read_vocabulary_provenance(plain) == {}
    assert pq.read_table(plain).equals(pq.read_table(path))
