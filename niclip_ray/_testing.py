"""Private test support: small, seeded CLIP weights, vocabularies, atlases and bundles.

Not part of the public API (as nilearn's ``_utils/data_gen.py``). They let tests and
benchmarks build a complete bundle without the paper's files or a language model. The numbers mean nothing; the shapes and keys are the real ones
(``docs/method.md``, "Model": 3 residual image blocks, 1 projection + 2 residual text blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from niclip_ray.model.vocabulary import make_vocabulary


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


def toy_atlas_id(dim: int = 64, voxel_mm: float = 8.0, seed: int = 0) -> str:
    """The atlas id of a :func:`toy_atlas`: its own, never the real DiFuMo's or the stand-in's."""
    return f"toy-difumo{dim}-{voxel_mm:g}mm-standin-seed{seed}"


def toy_atlas(data_dir: str | Path, dim: int = 64, voxel_mm: float = 8.0, seed: int = 0) -> Path:
    """Write a coarse stand-in DiFuMo atlas and its brain mask, for fast tests and demos.

    The atlas is written in nilearn's DiFuMo cache layout under ``data_dir`` (so
    :func:`niclip_ray.atlas.difumo.load_atlas` finds it, as a stand-in) on a coarse MNI grid
    of ``voxel_mm`` voxels, with one Gaussian blob (sigma 1.5 voxels, cut below 5 %) per
    component around distinct seeded centres inside an ellipsoidal "brain" mask.

    Returns
    -------
    Path
        The mask image (same grid as the maps); give it to a bundle so that maps are
        resampled to this grid.
    """
    import nibabel as nib

    from niclip_ray.atlas.cache import STANDIN_MARKER

    step = float(voxel_mm)
    lo, hi = np.array([-90.0, -126.0, -72.0]), np.array([90.0, 90.0, 108.0])
    shape = tuple(int(n) for n in np.floor((hi - lo) / step) + 1)
    affine = np.diag([step, step, step, 1.0])
    affine[:3, 3] = lo
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk * step + lo
    centre, radii = np.array([0.0, -18.0, 18.0]), np.array([70.0, 100.0, 80.0])
    inside = (((xyz - centre) / radii) ** 2).sum(axis=1) <= 1.0
    rng = np.random.default_rng(seed)
    centres = xyz[rng.choice(np.flatnonzero(inside), size=dim, replace=False)]
    sigma = 1.5 * step
    maps = np.zeros((*shape, dim), dtype=np.float32)
    for k, c in enumerate(centres):
        weight = np.exp(-((xyz - c) ** 2).sum(axis=1) / (2 * sigma**2))
        weight[(weight < 0.05) | ~inside] = 0.0
        maps[..., k] = (rng.uniform(0.5, 1.0) * weight).reshape(shape)
    root = Path(data_dir) / "difumo_atlases"
    (root / str(dim) / "2mm").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(maps, affine), root / str(dim) / "2mm" / "maps.nii.gz")
    labels = pd.DataFrame({"Component": np.arange(1, dim + 1),
                           "Difumo_names": [f"toy component {k}" for k in range(1, dim + 1)],
                           "Yeo_networks7": "none", "Yeo_networks17": "none", "GM": 0.0, "WM": 0.0, "CSF": 0.0})
    labels.to_csv(root / str(dim) / f"labels_{dim}_dictionary.csv", index=False)
    (root / "README.md").write_text(
        f"# toy DiFuMo {STANDIN_MARKER} ({voxel_mm:g} mm grid, for tests)\n\n"
        f"seed: {seed}\natlas id: {toy_atlas_id(dim, voxel_mm, seed)}\n"
    )
    mask_path = Path(data_dir) / "toy_mask.nii.gz"
    nib.save(nib.Nifti1Image(inside.reshape(shape).astype(np.uint8), affine), mask_path)
    return mask_path


def toy_bundle(
    out_dir: str | Path,
    atlas_dir: str | Path,
    *,
    text_dim: int = 32,
    dim: int = 64,
    seed: int = 0,
    logit_scale: float | None = 20.0,
    with_ontology: bool = True,
) -> Path:
    """Write a complete toy bundle (random weights, builtin-ontology vocabulary, toy atlas).

    The atlas and its mask are written by :func:`toy_atlas` into ``atlas_dir``; the bundle
    records the stand-in's ``atlas_id`` and carries the mask, so decoding with
    ``atlas_dir`` needs nothing else.
    """
    from niclip_ray.model.bundle import save_bundle
    from niclip_ray.ontology import load_ontology

    mask = toy_atlas(atlas_dir, dim=dim, seed=seed)
    ontology = load_ontology("builtin")
    config = {
        "logit_scale": logit_scale,
        "dropout": 0.5,
        "text_model_id": "toy-random",
        "atlas_id": toy_atlas_id(dim, seed=seed),
        "atlas_dim": dim,
    }
    return save_bundle(
        out_dir,
        toy_state_dict(text_dim, dim, seed),
        config,
        toy_vocabulary(ontology.task_names, text_dim, seed),
        ontology if with_ontology else None,
        mask_file=mask,
    )
