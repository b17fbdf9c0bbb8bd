"""Exact cosine search: every query against every candidate, in blocks of queries."""

from __future__ import annotations

import numpy as np

from niclip_ray.errors import ParameterError
from niclip_ray.vectors import l2_normalise

#: Scores held at once (queries per block x candidates); bounds a search's extra memory (~64 MiB per copy).
BLOCK_SCORES = 2**24


class ExactSearch:
    """Candidates normalised once, searched exactly by cosine.

    Parameters
    ----------
    candidates : (n_candidates, d) array
        Rows need not be normalised; zero rows score 0.
    """

    def __init__(self, candidates: np.ndarray):
        self.candidates = l2_normalise(np.atleast_2d(candidates))

    def __len__(self) -> int:
        return len(self.candidates)

    def top_k(self, queries: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` candidates of highest cosine similarity to each query, best first.

        Parameters
        ----------
        queries : (n_queries, d) array
        k : int
            Kept per query (at most ``n_candidates``).
        block : int, optional
            Queries per matrix product (default: :data:`BLOCK_SCORES` scores per block).

        Returns
        -------
        indices : (n_queries, k) int64
            Candidate rows, by decreasing score; ties keep the lower row first.
        scores : (n_queries, k) float32
            Their cosine similarities.
        """
        if k < 1:
            raise ParameterError("top_k", f"must be at least 1, got {k}")
        queries = l2_normalise(np.atleast_2d(queries))
        n = len(self.candidates)
        if queries.shape[1] != self.candidates.shape[1]:
            raise ValueError(f"queries are {queries.shape[1]}-d but candidates are {self.candidates.shape[1]}-d")
        k = min(int(k), n)
        block = block or max(1, BLOCK_SCORES // max(n, 1))
        indices = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), block):
            sims = queries[start : start + block] @ self.candidates.T
            if k < n:
                part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(n), sims.shape)
            part_scores = np.take_along_axis(sims, part, axis=1)
            order = np.lexsort((part, -part_scores), axis=1)
            indices[start : start + block] = np.take_along_axis(part, order, axis=1)
            scores[start : start + block] = np.take_along_axis(part_scores, order, axis=1)
        return indices, scores

