"""Shared storage: a stage's output directory is checked to be visible from every node."""

import pytest

from niclip_ray.errors import ConfigError
from niclip_ray.runtime import storage


def this_node():
    import ray

    [node] = [n for n in ray.nodes() if n["Alive"]]
    return node


def test_one_node_needs_no_check(ray_local, tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "probe_nodes", lambda *a: pytest.fail("one node is never probed"))
    storage.check_shared_dir(tmp_path)


def test_a_task_on_each_node_says_whether_it_sees_the_probe(ray_local, tmp_path):
    node = this_node()
    (tmp_path / "probe").touch()
    assert storage.probe_nodes(tmp_path / "probe", [node]) == {node["NodeID"]: True}
    assert storage.probe_nodes(tmp_path / "absent", [node]) == {node["NodeID"]: False}


def test_a_directory_every_node_sees_passes_and_keeps_no_probe(ray_local, tmp_path, monkeypatch):
    node = this_node()
    monkeypatch.setattr(storage, "live_nodes", lambda: [node, node])  # two nodes on one disk, as on one machine
    storage.check_shared_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_one_node_cannot_see_is_refused_naming_the_node(tmp_path, monkeypatch):
    nodes = [{"NodeID": "a" * 56, "NodeManagerAddress": "10.0.0.1"}, {"NodeID": "b" * 56, "NodeManagerAddress": "10.0.0.2"}]
    monkeypatch.setattr(storage, "live_nodes", lambda: nodes)
    monkeypatch.setattr(storage, "ray_temp_dir", lambda: tmp_path / "ray")
    monkeypatch.setattr(storage, "probe_nodes", lambda probe, nodes: {"a" * 56: True, "b" * 56: False})
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match=r"^the output directory .* is not visible from 1 of 2 nodes \(10\.0\.0\.2 "
                                          r"\(bbbbbbbb\)\): .*every node must mount it at the same path"):
        storage.check_shared_dir(tmp_path / "out")
    assert not list((tmp_path / "out").glob(storage.PROBE_PREFIX + "*"))


def test_a_path_in_a_jobs_copy_of_its_working_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "live_nodes", lambda: [{}, {}])
    monkeypatch.setattr(storage, "ray_temp_dir", lambda: tmp_path)
    copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "x" / "out"
    with pytest.raises(ConfigError, match=r"inside this node's Ray directory \(a relative path in a Ray Job"):
        storage.check_shared_dir(copy)
