"""``niclip-ray model fetch-reference`` against a local stand-in of OSF (API v2 JSON and downloads).

The server (a thread on 127.0.0.1) publishes small stand-in files in OSF's layout: five
files by guid and the ``data/cognitive_atlas`` folder, each with the size and sha256 of
its API metadata. A test can make it lie about a checksum, cut a body short, ignore
``Range`` or answer 404. DiFuMo is never downloaded: nilearn's fetcher is replaced by one
that writes a toy atlas.
"""

import hashlib
import io
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from niclip_ray._testing import toy_atlas, toy_state_dict
from niclip_ray.cli.main import run
from niclip_ray.home import default_bundle_dir
from niclip_ray.model.bundle import load_bundle
from niclip_ray.model.fetch_reference import FILES, SOURCES

NAMES = ["n-back task", "eriksen flanker task", "stroop task"]  # snapshot order = vocabulary order
TASKS = [{"id": f"trm_{k}", "name": n, "definition_text": f"{n} defined"} for k, n in enumerate(NAMES)]
CONCEPTS = [{"id": "trm_wm", "name": "working memory", "definition_text": "hold", "id_concept_class": "ctp_C5"},
            {"id": "trm_rc", "name": "response conflict", "definition_text": "compete", "id_concept_class": "ctp_C4"}]
REDUCED = "task,concept_1\nn-back task,working memory\neriksen flanker task,response conflict\nstroop task,response conflict\n"


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """``{osf_id: (name, bytes)}`` of the five files, and ``{name: bytes}`` of the Cognitive Atlas folder."""
    root = tmp_path_factory.mktemp("published")
    buffer = io.BytesIO()
    torch.save(toy_state_dict(text_dim=12, dim=64), buffer)
    rng = np.random.default_rng(0)
    content = {"model": buffer.getvalue(), "vocabulary": "\n".join(NAMES).encode(),
               "vocabulary_emb": npy(rng.standard_normal((3, 12)).astype(np.float32)),
               "vocabulary_prior": npy(np.full(3, 1 / 3)),
               "mask": toy_atlas(root, dim=64).read_bytes()}
    files = {osf_id: (name, content[role]) for role, (osf_id, name) in FILES.items()}
    atlas = {"task_snapshot-02-19-25.json": json.dumps(TASKS).encode(),
             "concept_extended_snapshot-02-19-25.json": json.dumps(CONCEPTS).encode(),
             "reduced_tasks.csv": REDUCED.encode()}
    return files, atlas


class Osf(BaseHTTPRequestHandler):
    """OSF's API v2 (``/v2/...``) and downloads (``/download/<id>/``) for the server's ``files``."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        osf = self.server
        osf.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/v2/"):
            return self.api(self.path[len("/v2/"):])
        match = re.fullmatch(r"/download/(\w+)/", self.path)
        if not match or match.group(1) not in osf.files or match.group(1) in osf.missing:
            return self.send_error(404)
        self.download(match.group(1))

    def api(self, path):
        osf = self.server
        if match := re.fullmatch(r"files/(\w+)/", path):
            if match.group(1) not in osf.files or match.group(1) in osf.missing:
                return self.send_error(404)
            return self.json({"data": self.entry(match.group(1))})
        if path == "nodes/dsj56/files/osfstorage/":
            return self.json({"data": [self.folder("data", "fdata")], "links": {"next": None}})
        if path == "nodes/dsj56/files/osfstorage/fdata/":
            return self.json({"data": [self.folder("cognitive_atlas", "fca")], "links": {"next": None}})
        if path == "nodes/dsj56/files/osfstorage/fca/":  # two pages, as OSF pages long listings
            ids = sorted(i for i in osf.files if i.startswith("ca"))
            return self.json({"data": [self.entry(i) for i in ids[:2]], "links": {"next": self.url("fca2/")}})
        if path == "nodes/dsj56/files/osfstorage/fca2/":
            ids = sorted(i for i in osf.files if i.startswith("ca"))
            return self.json({"data": [self.entry(i) for i in ids[2:]], "links": {"next": None}})
        self.send_error(404)

    def url(self, listing):
        return f"http://127.0.0.1:{self.server.server_port}/v2/nodes/dsj56/files/osfstorage/{listing}"

    def folder(self, name, folder_id):
        return {"id": folder_id, "type": "files", "attributes": {"kind": "folder", "name": name},
                "relationships": {"files": {"links": {"related": {"href": self.url(f"{folder_id}/")}}}}}

    def entry(self, osf_id):
        name, body = self.server.files[osf_id]
        sha256 = self.server.claimed.get(osf_id, hashlib.sha256(body).hexdigest())
        return {"id": osf_id, "type": "files",
                "attributes": {"kind": "file", "name": name, "guid": None if osf_id.startswith("ca") else osf_id,
                               "size": len(body), "extra": {"hashes": {"md5": "0" * 32, "sha256": sha256}}},
                "links": {"download": f"http://127.0.0.1:{self.server.server_port}/download/{osf_id}/"}}

    def json(self, value):
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def download(self, osf_id):
        osf, body = self.server, self.server.files[osf_id][1]
        start = int(m.group(1)) if (m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")) else 0
        if start and osf_id not in osf.ignore_range:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            start = 0
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if osf.truncate.get(osf_id):  # this answer stops halfway and the connection drops
            osf.truncate[osf_id] -= 1
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def osf(published, tmp_path, monkeypatch):
    """The running stand-in OSF, with NICLIP_OSF_API/FILES and NICLIP_HOME pointed at it and tmp_path."""
    files, atlas = published
    server = ThreadingHTTPServer(("127.0.0.1", 0), Osf)
    server.files = {**files, **{f"ca{k}": item for k, item in enumerate(sorted(atlas.items()))}}
    server.requests, server.claimed, server.truncate, server.missing, server.ignore_range = [], {}, {}, set(), set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("NICLIP_OSF_API", f"{base}/v2")
    monkeypatch.setenv("NICLIP_OSF_FILES", base)
    monkeypatch.setenv("NICLIP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("nilearn.datasets.fetch_atlas_difumo", fake_difumo)
    yield server
    server.shutdown()
    server.server_close()


def fake_difumo(dimension, resolution_mm, data_dir, verbose=0):
    """nilearn's fetcher, offline: a toy atlas in the real atlas's place (no stand-in marker)."""
    root = Path(data_dir) / "difumo_atlases"
    if not (root / str(dimension)).is_dir():
        toy_atlas(data_dir, dim=dimension)
        (root / "README.md").unlink()
    return SimpleNamespace(maps=str(root / str(dimension) / "2mm" / "maps.nii.gz"),
                           labels=pd.read_csv(root / str(dimension) / f"labels_{dimension}_dictionary.csv"))


def fetch(tmp_path, *extra):
    return run(["model", "fetch-reference", "--out", str(tmp_path / "osf"), "--atlas-dir", str(tmp_path / "nl"),
                *extra])


def test_fetch_verifies_records_imports_and_a_rerun_does_nothing(osf, tmp_path, capsys):
    assert fetch(tmp_path) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    model_name = FILES["model"][1]
    assert re.search(rf"{re.escape(model_name)}: [\d.]+ kB of [\d.]+ kB", text)  # plain progress lines off a terminal
    bundle = load_bundle(default_bundle_dir())
    assert default_bundle_dir() == tmp_path / "home" / "models" / "niclip-reference"
    assert bundle.vocabulary["name"].tolist() == NAMES and bundle.ontology is not None
    assert bundle.logit_scale == 20.0 and bundle.config["atlas_id"] == "difumo64-2mm"
    sources = json.loads((tmp_path / "osf" / SOURCES).read_text())
    assert bundle.config["source"]["osf"] == sources
    recorded = {f["path"]: f for f in sources["files"]}
    assert len(recorded) == 8 and "OSF" in sources["checksums"]
    for path, entry in recorded.items():
        data = (tmp_path / "osf" / path).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert recorded[model_name]["osf_id"] == "u3cxh" and "cognitive_atlas/reduced_tasks.csv" in recorded
    assert not list((tmp_path / "osf").rglob("*.part"))
    served = len(osf.requests)
    assert fetch(tmp_path) == 0
    assert len(osf.requests) == served  # verified files: not even the metadata is asked again
    assert "nothing to download" in (out := capsys.readouterr().out) and "already imported" in out


def test_a_wrong_checksum_is_refused_and_not_kept(osf, tmp_path, capsys):
    osf.claimed["nza7b"] = "ab" * 32
    assert fetch(tmp_path) == 1
    err = capsys.readouterr().err.strip()
    name = FILES["vocabulary_emb"][1]
    assert len(err.splitlines()) == 1 and name in err and "nza7b" in err and "OSF publishes" in err
    assert not (tmp_path / "osf" / name).exists() and not list((tmp_path / "osf").glob("*.part"))
    assert not (tmp_path / "osf" / SOURCES).exists() and not default_bundle_dir().exists()


def test_a_truncated_body_is_resumed_with_range(osf, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("niclip_ray.model.download.CHUNK_BYTES", 1024)  # the stand-in is smaller than a read
    osf.truncate["u3cxh"] = 1
    assert fetch(tmp_path) == 0, capsys.readouterr().err
    asked = [r for p, r in osf.requests if p == "/download/u3cxh/"]
    name, body = osf.files["u3cxh"]
    assert asked[0] is None and len(asked) == 2
    assert 0 < int(re.fullmatch(r"bytes=(\d+)-", asked[1]).group(1)) <= len(body) // 2
    assert (tmp_path / "osf" / name).read_bytes() == body


def test_a_body_cut_short_every_time_is_refused_and_kept_for_a_rerun(osf, tmp_path, capsys):
    osf.truncate["jzvry"] = 3
    assert fetch(tmp_path) == 1
    err = capsys.readouterr().err.strip()
    name = FILES["mask"][1]
    assert len(err.splitlines()) == 1 and f"download of {name} (jzvry) stopped at" in err and "rerun to resume" in err
    assert not (tmp_path / "osf" / name).exists() and (tmp_path / "osf" / f"{name}.part").is_file()
    assert fetch(tmp_path) == 0, capsys.readouterr().err  # the rerun continues the part
    assert (tmp_path / "osf" / name).read_bytes() == osf.files["jzvry"][1]


def test_a_partial_download_continues_or_restarts_when_range_is_ignored(osf, tmp_path, capsys):
    (tmp_path / "osf").mkdir()
    for osf_id in ("u3cxh", "nza7b"):
        name, body = osf.files[osf_id]
        (tmp_path / "osf" / f"{name}.part").write_bytes(body[:100])
    osf.ignore_range.add("nza7b")
    assert fetch(tmp_path) == 0, capsys.readouterr().err
    asked = {p: r for p, r in osf.requests if p.startswith("/download/")}
    assert asked["/download/u3cxh/"] == asked["/download/nza7b/"] == "bytes=100-"
    for osf_id in ("u3cxh", "nza7b"):
        name, body = osf.files[osf_id]
        assert (tmp_path / "osf" / name).read_bytes() == body


def test_a_missing_file_is_one_line_naming_its_id(osf, tmp_path, capsys):
    osf.missing.add("v82za")
    assert fetch(tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "v82za" in err and "404" in err


def test_offline_fails_within_seconds_naming_what_to_download(tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("NICLIP_OSF_API", f"http://127.0.0.1:{port}/v2")
    monkeypatch.setenv("NICLIP_OSF_FILES", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NICLIP_HOME", str(tmp_path / "home"))
    started = time.monotonic()
    assert fetch(tmp_path) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach" in err
    assert f"download by hand into {tmp_path / 'osf'}: " in err
    for osf_id, name in FILES.values():
        assert f"/download/{osf_id}/ as {name}" in err
    assert "the folder data/cognitive_atlas of " in err and " as cognitive_atlas/" in err

