"""Seeded, shuffled k-fold splits with a validation split inside each training fold.

The reference uses unshuffled nested ``KFold`` (contiguous in PMID order) and selects the
split with the best *test* recall. Here folds are shuffled with a seed, the validation
rows are carved out of the training part only, and model selection and early stopping
use validation alone; the test fold is scored once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from niclip_ray.errors import InputError, ParameterError


@dataclass(frozen=True)
class FoldSplit:
    """Row indices of one outer fold (disjoint, together all rows).

    Attributes
    ----------
    fold : int
    train, val, test : int64 arrays, sorted
    """

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def as_dict(self) -> dict[str, list[int]]:
        """JSON-friendly form."""
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}


def kfold_splits(n: int, n_folds: int, seed: int = 0, val_fraction: float = 0.1) -> list[FoldSplit]:
    """Shuffled k-fold over ``n`` rows, each training part split again into train/val.

    Parameters
    ----------
    n : int
        Number of rows (paired studies).
    n_folds : int
        Outer folds, at least 2; each row is in exactly one test fold.
    seed : int
        Seed of both shuffles.
    val_fraction : float
        Share of each training part held out for validation (at least one row each).

    Raises
    ------
    ParameterError
        When ``n_folds`` or ``val_fraction`` is out of range.
    InputError
        When there are too few rows for every part to hold at least two.
    """
    if n_folds < 2:
        raise ParameterError("n_folds", f"must be at least 2, got {n_folds}")
    if not 0.0 < val_fraction < 1.0:
        raise ParameterError("val_fraction", f"must be in (0, 1), got {val_fraction}")
    if n < 3 * n_folds or n // n_folds < 2:
        raise InputError(f"{n} paired studies are too few for {n_folds} folds (need at least {3 * n_folds})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    splits = []
    for fold, test in enumerate(np.array_split(order, n_folds)):
        rest = np.setdiff1d(order, test)
        rest = np.random.default_rng([seed, fold]).permutation(rest)
        n_val = min(max(2, int(round(val_fraction * len(rest)))), len(rest) - 2)
        splits.append(FoldSplit(fold, np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(test)))
    return splits
