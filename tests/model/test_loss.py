"""Symmetric InfoNCE against a hand-written formula and hand-computed cases."""

import math

import pytest
import torch

from niclip_ray.model import clip_loss


def formula(img, txt, scale):
    """Loop form of 0.5 * [CE(s I T^T) + CE(s T I^T)] with diagonal targets."""
    n = img.shape[0]
    sim = [[scale * float(img[i] @ txt[j]) for j in range(n)] for i in range(n)]
    row = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    col = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (row + col)


def test_two_orthogonal_pairs_by_hand():
    eye = torch.eye(2, dtype=torch.float64)
    # logits = s * I: each row is CE([s, 0], 0) = log(1 + e^-s)
    assert clip_loss(eye, eye, torch.tensor(10.0, dtype=torch.float64)).item() == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-5)
    # swapped pairs: the right answer has the low logit: log(1 + e^s) - 0 ... = s + log(1 + e^-s)
    swapped = eye.flip(0)
    assert clip_loss(eye, swapped, torch.tensor(3.0, dtype=torch.float64)).item() == pytest.approx(3.0 + math.log1p(math.exp(-3.0)), rel=1e-5)


def test_uniform_similarities_give_log_n():
    x = torch.zeros(7, 4)
    assert clip_loss(x, x, torch.tensor(10.0)).item() == pytest.approx(math.log(7), rel=1e-6)


def test_matches_formula_on_random_asymmetric_case():
    gen = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(6, 5, generator=gen, dtype=torch.float64), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(6, 5, generator=gen, dtype=torch.float64), dim=1)
    got = clip_loss(img, txt, torch.tensor(7.5, dtype=torch.float64)).item()
    assert got == pytest.approx(formula(img, txt, 7.5), rel=1e-10)


def test_gradient_reaches_the_scale():
    img = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    scale = torch.tensor(10.0, requires_grad=True)
    clip_loss(img, img.roll(1, 0), scale).backward()
    assert scale.grad is not None and scale.grad.item() != 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))
