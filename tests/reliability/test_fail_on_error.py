"""``embed images`` and ``embed text``: a failed study keeps exit 0 but is printed; ``--fail-on-error`` exits 1.

Today both exit 0 with only "N ok, M failed rows" in the summary line, and no flag makes a
pipeline notice.
"""

import pandas as pd
import pytest

from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.tables import read_parts
from tests.conftest import write_abstract_corpus

pytestmark = pytest.mark.timeout(600)
ABSTRACTS = {"s1": "Working memory load engaged prefrontal cortex.", "s2": "", "s3": "Flanker conflict and cingulate."}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three studies: s2 has no abstract and no peaks, so it fails in both stages."""
    path = tmp_path_factory.mktemp("corpus")
    coords = pd.DataFrame({"study_id": ["s1", "s3"], "analysis_id": ["s1", "s3"], "x": [-40.0, 4.0],
                           "y": [20.0, 18.0], "z": [30.0, 40.0], "space_in": "MNI"})  # fmt: skip
    write_abstract_corpus(path, ABSTRACTS, coords)
    return path


def test_embed_images_prints_failures_and_fails_on_request(ray_local, corpus, tmp_path, capsys):
    build_standin(default_standin_dir(0), 64, seed=0)
    argv = ["embed", "images", "--corpus", str(corpus), "--dim", "64", "--atlas-dir", str(default_standin_dir(0)), "--standin"]
    assert run([*argv, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr()
    assert "images: 2 ok, 1 failed rows" in printed.out
    assert f"FAILED: 1 of 3 studies (error column of {tmp_path / 'a'})" in printed.err

    assert run([*argv, "--out", str(tmp_path / "b"), "--fail-on-error"]) == 1
    assert "1 of 3 studies failed (--fail-on-error)" in capsys.readouterr().err
    assert read_parts(tmp_path / "b")["error"].to_pylist() == [None, "no peaks", None]  # the work is kept


def test_embed_text_fails_on_request(ray_local, tiny_bert_factory, corpus, tmp_path, capsys):
    argv = ["embed", "text", "--corpus", str(corpus), "--section", "abstract", "--model",
            str(tiny_bert_factory(32)), "--max-length", "8", "--out", str(tmp_path / "t")]  # fmt: skip
    assert run([*argv, "--fail-on-error"]) == 1
    printed = capsys.readouterr()
    assert "text: 2 ok, 1 failed rows" in printed.out and "FAILED: 1 of 3 studies" in printed.err
    assert "1 of 3 studies failed (--fail-on-error)" in printed.err
    assert run(argv) == 0  # resumes: nothing to redo, exit 0 without the flag
