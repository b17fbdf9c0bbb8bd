"""Image-to-text retrieval metrics, vectorised and chunked over rows.

For a similarity matrix ``S`` (rows: images, columns: texts, pair ``i`` on the diagonal):

* recall@k: fraction of rows whose own text is among the row's ``k`` most similar texts
  (the reference's ``recall_n`` with an identity ground truth);
* mix&match: mean over rows of the fraction of ``j != i`` with ``S[i, i] > S[i, j]``
  (the reference's ``mix_match``).

Both are fractions in [0, 1]; the reference's O(n^2) Python loops become one comparison
per chunk of rows, so the full matrix never has to exist at once.
"""

from __future__ import annotations

import torch


def _rank_counts(sim: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: texts scoring above the pair, and texts scoring below it."""
    rows = torch.arange(sim.shape[0], device=sim.device)
    own = sim[rows, rows + offset].unsqueeze(1)
    return (sim > own).sum(dim=1), (sim < own).sum(dim=1)


@torch.no_grad()
def retrieval_metrics(
    image_features: torch.Tensor, text_features: torch.Tensor, ks: tuple[int, ...] = (10, 100), chunk_size: int = 2048
) -> dict[str, float]:
    """recall@k for each ``k`` and mix&match of image->text retrieval.

    Parameters
    ----------
    image_features, text_features : (n, d) tensors
        Encoded pairs; row ``i`` of each belongs to study ``i``. ``n >= 2``.
    ks : tuple of int
        Cut-offs of recall.
    chunk_size : int
        Rows of the similarity matrix held at once.

    Returns
    -------
    dict
        ``{"recall@10": ..., "recall@100": ..., "mix&match": ...}``, fractions.
    """
    n = image_features.shape[0]
    if n < 2 or text_features.shape[0] != n:
        raise ValueError(f"need n >= 2 matching rows, got {n} images and {text_features.shape[0]} texts")
    hits = {k: 0 for k in ks}
    below_fraction = 0.0
    for start in range(0, n, chunk_size):
        sim = image_features[start : start + chunk_size] @ text_features.T
        above, below = _rank_counts(sim, start)
        for k in ks:
            hits[k] += int((above < k).sum())
        below_fraction += float((below.double() / (n - 1)).sum())
    out = {f"recall@{k}": hits[k] / n for k in ks}
    out["mix&match"] = below_fraction / n
    return out
