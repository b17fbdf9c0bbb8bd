"""CLIP checkpoints in the reference key layout: the key names, reading a file, its dimensions.

The reference ``braindec/model.py`` names its weights::

    image_model.model.{0,1,2}.{fc,layer_norm}.{weight,bias}
    text_model.model.0.{projection,fc,layer_norm}.{weight,bias}
    text_model.model.{1,2}.{fc,layer_norm}.{weight,bias}
    logit_scale

:class:`~niclip_ray.model.clip.CLIP` reproduces that layout, bundles store it, and the
paper's ``.pth`` files use it, sometimes with the ``module.`` prefix of a DDP-wrapped
model and a ``logit_scale`` of shape ``(1,)``. :func:`canonical_state_dict` fixes both,
once, wherever a state dict comes from.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from niclip_ray.errors import InputError

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")

IMAGE_TOWER = "image_model.model"
TEXT_TOWER = "text_model.model"
LOGIT_SCALE = "logit_scale"
#: ``(embed_dim, text_dim)``: the text head's projection into the shared space.
TEXT_PROJECTION = f"{TEXT_TOWER}.0.projection.weight"
#: ``(image_dim, image_dim)``: the first image block (the image side has no projection).
IMAGE_INPUT = f"{IMAGE_TOWER}.0.fc.weight"
#: What DDP puts in front of every key of the model it wraps.
DDP_PREFIX = "module."

_BLOCK = re.compile(rf"^({re.escape(IMAGE_TOWER)}|{re.escape(TEXT_TOWER)})\.(\d+)\.")


def canonical_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a DDP ``module.`` prefix and make ``logit_scale`` a 0-d tensor.

    Raises
    ------
    InputError
        When ``logit_scale`` holds more than one value.
    """
    state = {key.removeprefix(DDP_PREFIX): value for key, value in state_dict.items()}
    if LOGIT_SCALE in state:
        scale = torch.as_tensor(state[LOGIT_SCALE])
        if scale.numel() != 1:
            raise InputError(f"{LOGIT_SCALE} must hold one value, got shape {tuple(scale.shape)}")
        state[LOGIT_SCALE] = scale.reshape(())
    return state


@dataclass(frozen=True)
class CheckpointDims:
    """Widths and block counts read off a state dict."""

    text_dim: int
    image_dim: int
    embed_dim: int
    n_image_blocks: int
    n_text_blocks: int

    def as_config(self) -> dict[str, int]:
        """The dimensions as the ``config.json`` entries of a bundle."""
        return asdict(self)


def checkpoint_dims(state_dict: Mapping[str, torch.Tensor]) -> CheckpointDims:
    """Read the dimensions of a canonical state dict (see :func:`canonical_state_dict`).

    Raises
    ------
    InputError
        When keys of the reference layout are missing, or the text head projects into
        another width than the image head works in.
    """
    missing = [key for key in (IMAGE_INPUT, TEXT_PROJECTION, LOGIT_SCALE) if key not in state_dict]
    if missing:
        raise InputError(f"the weights lack the reference keys {missing} (not a NiCLIP CLIP state dict?)")
    embed_dim, text_dim = (int(n) for n in state_dict[TEXT_PROJECTION].shape)
    image_dim = int(state_dict[IMAGE_INPUT].shape[1])
    if image_dim != embed_dim:
        raise InputError(
            f"the text head projects to {embed_dim} dims but the image head works in {image_dim}; they must match"
        )
    blocks: dict[str, set[int]] = {IMAGE_TOWER: set(), TEXT_TOWER: set()}
    for key in state_dict:
        if match := _BLOCK.match(key):
            blocks[match.group(1)].add(int(match.group(2)))
    return CheckpointDims(text_dim, image_dim, embed_dim, len(blocks[IMAGE_TOWER]), len(blocks[TEXT_TOWER]))


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict from ``.safetensors`` or ``.pth`` without running pickled code.

    A ``.pth`` is read with ``torch.load(weights_only=True)``; a ``{"state_dict": ...}``
    wrapper is unwrapped. Tensors come back on the CPU, floating ones as float32, in the
    canonical layout (:func:`canonical_state_dict`).

    Raises
    ------
    InputError
        When the file is missing or unreadable, refuses weights-only loading, or holds
        anything but a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else read_torch_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a state dict of tensors")
    return canonical_state_dict({key: _cpu_float32(value) for key, value in state.items()})


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"cannot read weights {path}: {exc}") from exc


def read_torch_file(path: str | Path) -> dict:
    """Load a ``torch.save`` file that holds only tensors and plain containers, on CPU.

    Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``):
    unpickling other objects can run code. Torch's own refusal is a screen of advice ending
    in "weights_only=False will likely succeed"; here it is one line saying what the file holds.

    Parameters
    ----------
    path : str or Path
        A ``.pt``/``.pth`` file.

    Returns
    -------
    dict
        What the file holds (a state dict, or a dict wrapping one), tensors on CPU.

    Raises
    ------
    InputError
        In one line naming the file: missing, corrupt, holding pickled objects other than
        tensors, or not holding a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found is None:
            raise InputError(f"{path}: not a torch state dict file (corrupt, or not written by torch.save)") from None
        raise InputError(
            f"{path}: not a plain state dict of tensors (it holds pickled objects such as {found.group(1)}); "
            "it was not loaded, because unpickling them can run code: save model.state_dict() instead"
        ) from None
    except (RuntimeError, EOFError) as exc:
        reason = (str(exc).strip().split(". ")[0] or type(exc).__name__)[:200]
        raise InputError(f"{path}: not a readable torch file ({reason})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _cpu_float32(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.is_floating_point() else tensor
