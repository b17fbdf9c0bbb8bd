"""Reading CLIP checkpoints: .pth (weights only) and .safetensors, DDP prefixes, dimensions."""

import pytest
import torch
from safetensors.torch import save_file

from niclip_ray._testing import toy_state_dict
from niclip_ray.errors import InputError
from niclip_ray.model.checkpoint import CheckpointDims, canonical_state_dict, checkpoint_dims, load_checkpoint


class Payload:
    """An arbitrary class: unpickling it would run code, so weights-only loading refuses it."""


def ddp_wrapped(state: dict) -> dict:
    """What ``torch.save(ddp_model.state_dict())`` writes: prefixed keys, a (1,) logit scale."""
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.logit_scale"] = state["logit_scale"].reshape(1)
    return wrapped


def test_reference_pth_loads_weights_only(tmp_path):
    state = toy_state_dict(16, 8)
    pth = tmp_path / "model.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, pth)
    loaded = load_checkpoint(pth)
    assert set(loaded) == set(state)
    assert torch.equal(loaded["text_model.model.0.projection.weight"], state["text_model.model.0.projection.weight"])

    evil = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(InputError, match="not a plain state dict of tensors"):
        load_checkpoint(evil)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_both_formats_give_the_canonical_float32_state(tmp_path, suffix):
    state = toy_state_dict(12, 6, logit_scale=3.0)
    half = {k: v.half() for k, v in ddp_wrapped(state).items()}
    path = tmp_path / f"model{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": half}, path)  # a training script's wrapper dict
    else:
        save_file(half, str(path))
    loaded = load_checkpoint(path)
    assert sorted(loaded) == sorted(state)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in loaded.values())
    assert loaded["logit_scale"].shape == () and loaded["logit_scale"].item() == 3.0
    key = "image_model.model.1.fc.weight"
    torch.testing.assert_close(loaded[key], state[key].half().float())


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="cannot read weights"):
        load_checkpoint(tmp_path / "junk.safetensors")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(InputError, match="does not hold a state dict of tensors"):
        load_checkpoint(tmp_path / "list.pth")


def test_canonical_state_dict_strips_the_prefix_once_and_reshapes_the_scale():
    state = {"module.module.x": torch.zeros(1), "logit_scale": torch.tensor([[2.0]])}
    canonical = canonical_state_dict(state)
    assert sorted(canonical) == ["logit_scale", "module.x"] and canonical["logit_scale"].shape == ()
    with pytest.raises(InputError, match="logit_scale must hold one value"):
        canonical_state_dict({"logit_scale": torch.zeros(2)})


def test_dims_are_read_off_the_weights():
    # toy_state_dict builds 3 image blocks and 3 text blocks (a projection block 0 + 2 more).
    assert checkpoint_dims(toy_state_dict(text_dim=20, dim=10)) == CheckpointDims(20, 10, 10, 3, 3)
    state = toy_state_dict(20, 10)
    del state["logit_scale"]
    with pytest.raises(InputError, match=r"lack the reference keys \['logit_scale'\]"):
        checkpoint_dims(state)
    state = toy_state_dict(20, 10) | {"text_model.model.0.projection.weight": torch.zeros(7, 20)}
    with pytest.raises(InputError, match="projects to 7 dims but the image head works in 10; they must match"):
        checkpoint_dims(state)
