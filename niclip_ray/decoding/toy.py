"""Small, seeded CLIP weights and vocabularies in the reference layout.

They let tests, benchmarks and demos build a complete bundle without the paper's files
or a language model. The numbers mean nothing; the shapes and keys are the real ones
(§4 of the method notes: 3 residual image blocks, 1 projection + 2 residual text blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from niclip_ray.decoding.vocabulary import make_vocabulary


def _linear(gen: torch.Generator, out_dim: int, in_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    bound = 1.0 / np.sqrt(in_dim)
    weight = (torch.rand(out_dim, in_dim, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(out_dim, generator=gen) * 2 - 1) * bound
    return weight, bias


def toy_state_dict(text_dim: int = 32, dim: int = 64, seed: int = 0, logit_scale: float = 10.0) -> dict:
    """Random CLIP weights with the reference keys.

    Parameters
    ----------
    text_dim : int
        Width of the text embeddings (4096 for the paper's LLMs).
    dim : int
        Atlas dimension = shared embedding width (512 in the paper).
    seed : int
    logit_scale : float
        Value of the (linear) learned scale.

    Returns
    -------
    dict of str to float32 Tensor
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def block(prefix: str) -> None:
        state[f"{prefix}.fc.weight"], state[f"{prefix}.fc.bias"] = _linear(gen, dim, dim)
        state[f"{prefix}.layer_norm.weight"] = 1 + 0.1 * torch.randn(dim, generator=gen)
        state[f"{prefix}.layer_norm.bias"] = 0.1 * torch.randn(dim, generator=gen)

    for i in range(3):
        block(f"image_model.model.{i}")
    state["text_model.model.0.projection.weight"], state["text_model.model.0.projection.bias"] = _linear(
        gen, dim, text_dim
    )
    for i in range(3):
        block(f"text_model.model.{i}")
    state["logit_scale"] = torch.tensor(float(logit_scale))
    return state


def toy_vocabulary(names: Sequence[str], text_dim: int = 32, seed: int = 0) -> pd.DataFrame:
    """A vocabulary over ``names`` with random name/definition embeddings and a random prior."""
    rng = np.random.default_rng(seed)
    n = len(names)
    emb_names = rng.standard_normal((n, text_dim)).astype(np.float32)
    emb_defs = rng.standard_normal((n, text_dim)).astype(np.float32)
    prior = rng.random(n) + 0.1
    return make_vocabulary(
        names,
        {"names": emb_names, "definitions": emb_defs, "combined": 0.5 * emb_names + 0.5 * emb_defs},
        prior / prior.sum(),
        definitions=[f"definition of {x}" for x in names],
    )
