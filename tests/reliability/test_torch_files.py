"""``read_torch_file``: plain state dicts load; anything else is one line naming the file."""

import argparse
from pathlib import Path

import pytest
import torch

from niclip_ray.errors import InputError
from niclip_ray.model.checkpoint import read_torch_file


class WritesMarker:
    """Unpickling this object writes ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.write_text, (Path(self.path), "code from a torch file ran")


def test_a_plain_state_dict_loads_on_cpu(tmp_path):
    state = {"image_model.model.0.weight": torch.arange(6.0).reshape(2, 3), "logit_scale": torch.tensor(2.5)}
    torch.save(state, tmp_path / "model.pth")
    loaded = read_torch_file(tmp_path / "model.pth")
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) and loaded[k].device.type == "cpu" for k in state)


def test_pickled_objects_are_refused_in_one_line_without_running(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint.pth"
    torch.save({"weight": torch.zeros(2), "args": argparse.Namespace(lr=0.1), "hook": WritesMarker(marker)}, path)
    with pytest.raises(InputError) as info:
        read_torch_file(path)
    message = str(info.value)
    assert message == (
        f"{path}: not a plain state dict of tensors (it holds pickled objects such as argparse.Namespace); "
        "it was not loaded, because unpickling them can run code: save model.state_dict() instead"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not marker.exists()


def test_corrupt_empty_missing_and_non_dict_files_are_one_line_errors(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"w": torch.zeros(3)}, tmp_path / "whole.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:200])
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    expected = {
        "garbage.pth": "not a torch state dict file (corrupt, or not written by torch.save)",
        "empty.pth": "not a readable torch file (EOFError)",
        "truncated.pth": "not a readable torch file (PytorchStreamReader failed reading zip archive: "
                         "failed finding central directory)",
        "tensor.pth": "holds a Tensor, not a state dict",
        "missing.pth": "no such file",
    }
    for name, reason in expected.items():
        with pytest.raises(InputError) as info:
            read_torch_file(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name}: {reason}"
