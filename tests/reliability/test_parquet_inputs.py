"""Parquet inputs are checked before any data is read: a pickled-object column never runs code.

Importing ``ray.data`` (as every Ray command does) registers Ray's pickled-object Arrow
extension type, whose values are unpickled when a column is converted. Each test plants a
payload whose unpickling writes a marker file, and checks that the read is refused with an
error naming the file and the column, and that the marker was never written.
"""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.data  # noqa: F401  registers the pickled-object type, as in a Ray command
from ray.air.util.object_extensions.arrow import ArrowPythonObjectType

from niclip_ray.atlas.difumo import build_standin, default_standin_dir
from niclip_ray.cli.main import run
from niclip_ray.corpus import ingest, load_corpus
from niclip_ray.errors import InputError
from niclip_ray.tables import (
    read_parquet_checked,
    read_parts,
    tensor_array,
    write_parquet_atomic,
)


class WritesMarker:
    """Unpickling this object writes ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.write_text, (Path(self.path), "code from a Parquet file ran")


def pickled_column(marker: Path, n_rows: int) -> pa.ExtensionArray:
    """A column of Ray's pickled-object type whose every value writes ``marker`` when read."""
    payload = pa.array([pickle.dumps(WritesMarker(marker))] * n_rows, pa.large_binary())
    return pa.ExtensionArray.from_storage(ArrowPythonObjectType(), payload)


def replace_column(path: Path, name: str, marker: Path) -> None:
    table = pq.read_table(path)
    index = table.column_names.index(name)
    pq.write_table(table.set_column(index, name, pickled_column(marker, len(table))), path)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("laird")
    ingest("nimare:neurosynth_laird", out)
    return out


@pytest.fixture
def poisoned_corpus(corpus_dir, tmp_path):
    """The 17-study Laird corpus with its ``title`` column replaced by the payload."""
    out = tmp_path / "corpus"
    out.mkdir()
    for path in corpus_dir.glob("*.parquet"):
        (out / path.name).write_bytes(path.read_bytes())
    marker = tmp_path / "marker"
    replace_column(out / "studies.parquet", "title", marker)
    return out, marker


def test_the_payload_runs_when_read_unchecked(poisoned_corpus):
    corpus, marker = poisoned_corpus
    titles = pd.read_parquet(corpus / "studies.parquet")["title"]
    assert len(titles) == 17
    assert marker.read_text() == "code from a Parquet file ran"


def test_load_corpus_refuses_a_pickled_title_column(poisoned_corpus):
    corpus, marker = poisoned_corpus
    with pytest.raises(InputError) as info:
        load_corpus(corpus)
    assert f"{corpus / 'studies.parquet'}: column 'title' has the extension type ray.data.arrow_pickled_object" in str(
        info.value
    )
    assert not marker.exists()


def test_embed_images_refuses_the_corpus_before_running_its_code(ray_local, poisoned_corpus, tmp_path, capsys):
    corpus, marker = poisoned_corpus
    build_standin(default_standin_dir(0), 64, seed=0)
    argv = ["embed", "images", "--corpus", str(corpus), "--out", str(tmp_path / "images"), "--dim", "64",
            "--atlas-dir", str(default_standin_dir(0)), "--standin"]
    assert run(argv) == 1
    err = capsys.readouterr().err
    assert "studies.parquet: column 'title' has the extension type ray.data.arrow_pickled_object" in err
    assert not marker.exists()
    assert not list((tmp_path / "images").glob("part-*.parquet"))


def test_studyset_source_with_a_pickled_column_is_refused(tmp_path):
    from nimare.utils import get_resource_path

    shipped = Path(get_resource_path()) / "nback_vs_flanker_studyset_2026-07"
    source = tmp_path / "studyset"
    source.mkdir()
    for path in shipped.glob("*.parquet"):
        (source / path.name).write_bytes(path.read_bytes())
    marker = tmp_path / "marker"
    replace_column(source / "coordinates.parquet", "space", marker)
    with pytest.raises(InputError, match=r"coordinates\.parquet: column 'space' has the extension type"):
        ingest(str(source), tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def _features_part(directory: Path, n_rows: int = 3) -> Path:
    table = pa.table({
        "study_id": [f"s{i}" for i in range(n_rows)],
        "embedding": tensor_array(np.arange(n_rows * 4, dtype=np.float32).reshape(n_rows, 4)),
        "n_peaks": np.arange(n_rows, dtype=np.int64),
        "error": [""] * n_rows,
    })
    return write_parquet_atomic(table, directory / "part-00000.parquet")


def test_features_parts_with_tensors_are_read(tmp_path):
    _features_part(tmp_path)
    table = read_parts(tmp_path)
    assert table.num_rows == 3
    assert table["embedding"].type.extension_name == "arrow.fixed_shape_tensor"


def test_features_part_with_a_pickled_column_is_refused(tmp_path):
    part = _features_part(tmp_path / "images")
    marker = tmp_path / "marker"
    replace_column(part, "error", marker)
    with pytest.raises(InputError) as info:
        read_parts(tmp_path / "images").to_pandas()
    assert str(info.value).startswith(f"{part}: column 'error' has the extension type ray.data.arrow_pickled_object")
    assert not marker.exists()


def test_bundle_with_a_pickled_vocabulary_column_is_refused(tmp_path):
    from niclip_ray._testing import toy_state_dict, toy_vocabulary
    from niclip_ray.model.bundle import _write_manifest as write_manifest
    from niclip_ray.model.bundle import load_bundle, save_bundle

    bundle = save_bundle(tmp_path / "b", toy_state_dict(16, 8), {}, toy_vocabulary(["a", "b", "c"], 16))
    marker = tmp_path / "marker"
    replace_column(bundle / "vocabulary.parquet", "name", marker)
    write_manifest(bundle)  # a consistent, hostile bundle: its checksums match
    with pytest.raises(InputError) as info:
        load_bundle(bundle)
    assert f"{bundle / 'vocabulary.parquet'}: column 'name' has the extension type" in str(info.value)
    assert not marker.exists()


def test_nested_and_unregistered_extensions_and_binary_are_refused(tmp_path):
    marker = tmp_path / "marker"
    nested = pa.StructArray.from_arrays([pa.array(["a"]), pickled_column(marker, 1)], names=["name", "payload"])
    pq.write_table(pa.table({"meta": nested}), tmp_path / "nested.parquet")
    with pytest.raises(InputError, match=r"nested\.parquet: column 'meta\.payload' has the extension type"):
        read_parquet_checked(tmp_path / "nested.parquet")

    unknown = pa.field("title", pa.string(), metadata={b"ARROW:extension:name": b"acme.sneaky"})
    pq.write_table(pa.table({"title": ["t"]}, schema=pa.schema([unknown])), tmp_path / "unknown.parquet")
    with pytest.raises(InputError, match=r"unknown\.parquet: column 'title' has the extension type acme\.sneaky"):
        read_parquet_checked(tmp_path / "unknown.parquet")

    pq.write_table(pa.table({"id": ["a", "b"], "blob": [b"\x80\x04", b"x"]}), tmp_path / "blob.parquet")
    with pytest.raises(InputError, match=r"blob\.parquet: column 'blob' holds raw bytes \(binary\)"):
        read_parquet_checked(tmp_path / "blob.parquet")
    assert read_parquet_checked(tmp_path / "blob.parquet", allow_binary=("blob",)).num_rows == 2
    assert not marker.exists()


def test_unreadable_parquet_names_the_file(tmp_path):
    (tmp_path / "part-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"cannot read .*part-00000\.parquet"):
        read_parts(tmp_path)
