"""``niclip-ray embed text`` through the CLI entry point, with a tiny BERT saved to disk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from niclip_ray.cli.main import run
from niclip_ray.features.text import TextEmbedder
from niclip_ray.tables import read_parts, tensor_to_numpy
from tests.conftest import write_abstract_corpus

pytestmark = pytest.mark.timeout(300)
ABSTRACTS = {
    "s1": "Working memory load increased dorsolateral prefrontal activity in the 2-back condition.",
    "s2": "",
    "s3": "Incongruent flanker trials recruited the anterior cingulate cortex.",
    "s4": "Stroop interference engaged the inferior frontal junction and parietal cortex.",
}


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_factory):
    return tiny_bert_factory(32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    coords = pd.DataFrame({"study_id": list(ABSTRACTS), "analysis_id": list(ABSTRACTS), "x": 0.0, "y": 0.0,
                           "z": 0.0, "space_in": "MNI"})  # fmt: skip
    write_abstract_corpus(path, ABSTRACTS, coords)
    return path


def test_embed_text_writes_parts_and_reports_rows(ray_local, tiny_bert, corpus, tmp_path, capsys):
    out = tmp_path / "text"
    argv = ["embed", "text", "--corpus", str(corpus), "--section", "abstract", "--model", str(tiny_bert),
            "--out", str(out), "--max-length", "8", "--shard-size", "2", "--batch-size", "3"]  # fmt: skip
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "text: 3 ok, 1 failed rows in 2 shards (0 already done)" in printed
    table = read_parts(out)
    assert table["error"].to_pylist() == [None, "no abstract text", None, None]
    texts = [ABSTRACTS[s] for s in ("s1", "s3", "s4")]
    expected = TextEmbedder(str(tiny_bert), max_length=8).embed(texts).vectors
    np.testing.assert_allclose(tensor_to_numpy(table["embedding"])[[0, 2, 3]], expected, rtol=1e-4, atol=1e-5)
    assert set(table["model_id"].to_pylist()) == {str(tiny_bert)}

    assert run(argv) == 0
    assert "(2 already done)" in capsys.readouterr().out


def test_embed_text_errors_are_one_line(tiny_bert, corpus, tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert run(["embed", "text", "--corpus", str(corpus), "--model", str(missing), "--out", str(tmp_path / "o")]) == 1
    assert f"{missing}" in capsys.readouterr().err
    assert run(["embed", "text", "--corpus", str(tmp_path), "--model", str(tiny_bert), "--out", str(tmp_path / "o")]) == 1
    assert "is not a corpus directory" in capsys.readouterr().err
    bad = ["embed", "text", "--corpus", str(corpus), "--model", str(tiny_bert), "--out", str(tmp_path / "o"),
           "--max-length", "64"]  # fmt: skip
    assert run(bad) == 1
    assert "exceeds the 32 positions" in capsys.readouterr().err
