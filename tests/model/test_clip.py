"""CLIP heads against the reference's key layout, parameter counts and a hand-written forward."""

import math

import pytest
import torch
import torch.nn.functional as F

from niclip_ray.errors import InputError
from niclip_ray.model import CLIP

# The reference's keys (braindec/model.py), listed by hand: the layout the paper's .pth uses.
REFERENCE_KEYS = sorted(
    [f"image_model.model.{i}.{m}.{p}" for i in range(3) for m in ("fc", "layer_norm") for p in ("weight", "bias")]
    + [f"text_model.model.0.{m}.{p}" for m in ("projection", "fc", "layer_norm") for p in ("weight", "bias")]
    + [f"text_model.model.{i}.{m}.{p}" for i in (1, 2) for m in ("fc", "layer_norm") for p in ("weight", "bias")]
    + ["logit_scale"]
)


def reference_state_dict(text_dim: int, dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the reference layout, built from key names and shapes only."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key in REFERENCE_KEYS:
        if key == "logit_scale":
            state[key] = torch.tensor(13.5)
            continue
        if key.endswith("projection.weight"):
            shape = (dim, text_dim)
        elif key.endswith("fc.weight"):
            shape = (dim, dim)
        else:
            shape = (dim,)
        state[key] = torch.randn(*shape, generator=gen) * 0.1
    return state


def naive_forward(state, prefix, x, blocks):
    """Hand-written forward with raw tensors: the independent oracle."""
    def ln(h, i):
        return F.layer_norm(h, h.shape[-1:], state[f"{prefix}.{i}.layer_norm.weight"], state[f"{prefix}.{i}.layer_norm.bias"])

    def lin(h, name):
        return h @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    h = x
    for i, kind in enumerate(blocks):
        if kind == "proj":
            p = lin(h, f"{prefix}.{i}.projection")
            h = ln(p + lin(F.gelu(p), f"{prefix}.{i}.fc"), i)
        else:
            h = ln(h + F.gelu(lin(h, f"{prefix}.{i}.fc")), i)
    return h / h.norm(dim=1, keepdim=True)


def test_reference_parameter_counts_and_keys():
    model = CLIP(4096, 512)
    assert sorted(model.state_dict()) == REFERENCE_KEYS
    n_text = sum(p.numel() for p in model.text_model.parameters())
    n_image = sum(p.numel() for p in model.image_model.parameters())
    assert n_text == 2_888_704
    assert n_image == 791_040
    assert sum(p.numel() for p in model.parameters()) == 2_888_704 + 791_040 + 1
    assert model.logit_scale.item() == 10.0


def test_loads_reference_state_dict_and_matches_hand_written_forward():
    state = reference_state_dict(text_dim=24, dim=8)
    model = CLIP.from_state_dict(state).eval()
    assert (model.text_dim, model.image_dim) == (24, 8)
    assert model.logit_scale.item() == pytest.approx(13.5)
    img, txt = torch.randn(5, 8), torch.randn(5, 24)
    with torch.no_grad():
        fi, ft, scale = model(img, txt)
    torch.testing.assert_close(fi, naive_forward(state, "image_model.model", img, ["res"] * 3))
    torch.testing.assert_close(ft, naive_forward(state, "text_model.model", txt, ["proj", "res", "res"]))
    torch.testing.assert_close(fi.norm(dim=1), torch.ones(5))
    assert scale.item() == pytest.approx(13.5)


def test_strips_ddp_prefix_and_accepts_shaped_logit_scale():
    state = reference_state_dict(text_dim=6, dim=4)
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.logit_scale"] = torch.tensor([7.0])
    model = CLIP.from_state_dict(wrapped)
    assert model.logit_scale.item() == 7.0
    torch.testing.assert_close(model.state_dict()["text_model.model.0.projection.weight"], state["text_model.model.0.projection.weight"])


def test_round_trip_of_own_state_dict():
    model = CLIP(10, 6, dropout=0.3)
    again = CLIP.from_state_dict(model.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("text_model.model.0.projection.weight"), "projection"),
        (lambda s: s.pop("image_model.model.2.fc.bias"), "does not fit"),
        (lambda s: s.update(extra=torch.zeros(1)), "does not fit"),
        (lambda s: s.update({"image_model.model.0.fc.weight": torch.zeros(5, 5)}), "must match"),
        (lambda s: s.update(logit_scale=torch.zeros(2)), "logit_scale"),
    ],
)
def test_bad_state_dict_is_a_clear_error(mutate, message):
    state = reference_state_dict(text_dim=6, dim=4)
    mutate(state)
    with pytest.raises(InputError, match=message):
        CLIP.from_state_dict(state)


def test_wrong_input_width_names_the_input():
    model = CLIP(6, 4)
    with pytest.raises(InputError, match="text embeddings"):
        model.encode_text(torch.zeros(2, 5))
    with pytest.raises(InputError, match="image features"):
        model.encode_image(torch.zeros(2, 6))


def test_dropout_only_active_in_training_mode():
    model = CLIP(6, 4, dropout=0.5)
    x = torch.randn(3, 4)
    model.eval()
    torch.testing.assert_close(model.encode_image(x), model.encode_image(x))
    model.train()
    torch.manual_seed(0)
    a = model.encode_image(x)
    b = model.encode_image(x)
    assert not torch.allclose(a, b)
    assert math.isclose(model.logit_scale.item(), 10.0)
