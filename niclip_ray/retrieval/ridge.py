"""Ridge regression from text latents to atlas coefficients, its penalty chosen by k-fold CV.

For inputs ``X`` (n, p) and targets ``Y`` (n, q), both centred on their training means,
the fit for penalty ``alpha`` is ``W = (X'X + alpha I)^-1 X'Y`` and the intercept is
``mean(Y) - mean(X) W``. It is computed for every candidate penalty at once from one SVD
``X = U S V'``: ``W = V diag(s / (s^2 + alpha)) U'Y``. The penalty is the one with the
lowest mean squared error over ``n_folds`` seeded folds of the (training) rows given;
the final model is refitted on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from niclip_ray.errors import ParameterError

#: Penalties tried by default (the latents are unit vectors, so small values matter).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


@dataclass(frozen=True)
class RidgeModel:
    """A fitted ridge regression.

    Attributes
    ----------
    coef : (p, q) float64
    intercept : (q,) float64
    alpha : float
        The penalty chosen.
    cv_mse : dict of float to float
        Mean squared validation error of every penalty tried (empty when not cross-validated).
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    cv_mse: dict

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(n, q)`` predictions for ``(n, p)`` inputs."""
        return np.atleast_2d(np.asarray(x, dtype=np.float64)) @ self.coef + self.intercept


def _solutions(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients ``(n_alphas, p, q)`` and the means used to centre ``x`` and ``y``."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # (n_alphas, rank)
    coefs = (vt.T[None, :, :] * shrink[:, None, :]) @ uty  # batched BLAS products, one per alpha
    return coefs, x_mean, y_mean


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    seed: int = 0,
) -> RidgeModel:
    """Fit ridge regression, choosing ``alpha`` by k-fold cross-validation on these rows only.

    Parameters
    ----------
    x : (n, p) array
        Inputs (text latents of the training studies).
    y : (n, q) array
        Targets (their atlas coefficients).
    alphas : tuple of float
        Candidate penalties (positive). A single value skips cross-validation.
    n_folds : int
        Folds (at least 2, at most ``n``).
    seed : int
        Seed of the fold assignment.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x {x.shape} and y {y.shape} must be 2-D with the same rows")
    grid = np.asarray(alphas, dtype=np.float64)
    if not len(grid) or (grid <= 0).any():
        raise ParameterError("alphas", f"must be positive, got {list(alphas)}")
    cv_mse = {}
    if len(grid) > 1:
        if not 2 <= n_folds <= len(x):
            raise ParameterError("n_folds", f"must be between 2 and the {len(x)} training rows, got {n_folds}")
        folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), n_folds)
        errors = np.zeros(len(grid))
        for held in folds:
            train = np.setdiff1d(np.arange(len(x)), held)
            coefs, x_mean, y_mean = _solutions(x[train], y[train], grid)
            pred = (x[held] - x_mean)[None, :, :] @ coefs + y_mean
            errors += ((pred - y[held]) ** 2).sum(axis=(1, 2))
        errors /= y.size
        cv_mse = {float(a): float(e) for a, e in zip(grid, errors)}
        alpha = float(grid[int(np.argmin(errors))])
    else:
        alpha = float(grid[0])
    coefs, x_mean, y_mean = _solutions(x, y, np.array([alpha]))
    return RidgeModel(coefs[0], y_mean - x_mean @ coefs[0], alpha, cv_mse)
