"""Vectorised retrieval metrics against naive loops written like the reference's."""

import numpy as np
import pytest
import torch

from niclip_ray.training.metrics import retrieval_metrics


def naive_mix_match(sim):
    scores = []
    for i in range(len(sim)):
        wins = sum(1 for j in range(len(sim[i])) if j != i and sim[i][i] > sim[i][j])
        scores.append(wins / (len(sim[i]) - 1))
    return float(np.mean(scores))


def naive_recall(sim, n_first):
    """Identity ground truth: is column i among the n_first highest of row i."""
    hits = []
    for i, row in enumerate(sim):
        top = np.argsort(row)[::-1][:n_first]
        hits.append(1.0 if i in top else 0.0)
    return float(np.mean(hits))


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 4096])
def test_chunked_features_match_naive_loops(chunk_size):
    gen = torch.Generator().manual_seed(5)
    img = torch.nn.functional.normalize(torch.randn(130, 6, generator=gen, dtype=torch.float64), dim=1)
    txt = torch.nn.functional.normalize(img + 0.7 * torch.randn(130, 6, generator=gen, dtype=torch.float64), dim=1)
    sim = (img @ txt.T).numpy()
    got = retrieval_metrics(img, txt, ks=(10, 100), chunk_size=chunk_size)
    assert got["recall@10"] == pytest.approx(naive_recall(sim, 10))
    assert got["recall@100"] == pytest.approx(naive_recall(sim, 100))
    assert got["mix&match"] == pytest.approx(naive_mix_match(sim))
    assert 0 < got["recall@10"] < got["recall@100"] < 1


def test_perfect_and_reversed_retrieval():
    eye = torch.eye(20)
    assert retrieval_metrics(eye, eye) == {"recall@10": 1.0, "recall@100": 1.0, "mix&match": 1.0}
    assert retrieval_metrics(torch.eye(5), -torch.eye(5))["mix&match"] == 0.0


def test_needs_two_matching_rows():
    with pytest.raises(ValueError, match="n >= 2"):
        retrieval_metrics(torch.zeros(1, 3), torch.zeros(1, 3))
