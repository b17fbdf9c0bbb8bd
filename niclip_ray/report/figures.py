"""Figures of the report, written as PNG files (matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report is drawn in batch jobs and workers without a display

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.atomic import replacing
from niclip_ray.decoding.schema import LEVELS
from niclip_ray.errors import InputError

CURVE_COLUMNS = ("fold", "epoch", "train_loss", "val_loss")


#: A signed map hides voxels whose absolute value is below this percentile of its non-zero voxels.
SIGNED_PERCENTILE = 95.0
#: The rule of :func:`map_style`, as the report and the service's page both state it.
THRESHOLD_RULE = (
    "Threshold (the same in the report and on the service page): a map with negative values (a t, z or beta "
    f"map) hides the voxels whose |value| is below the {SIGNED_PERCENTILE:g}th percentile of |value| over its "
    f"non-zero voxels, so the {100 - SIGNED_PERCENTILE:g}% farthest from 0 are shown whatever the statistic; a map "
    "with no negative value (MKDA spheres, a density) shows every voxel above 0."
)
#: The threshold of a non-negative map: just above 0, so every non-zero voxel is drawn.
ABOVE_ZERO = 1e-6


@dataclass(frozen=True)
class MapFigure:
    """A drawn map: its PNG, how it was drawn (``kind``) and a caption saying so."""

    path: Path
    kind: str
    threshold: float
    caption: str


def map_style(data: np.ndarray) -> tuple[str, float]:
    """How to draw a map: ``("non-negative", 0.0)`` or ``("signed", threshold)``.

    A map with no negative voxel (an MKDA map of 0/1 spheres, a density, a probability) has
    no negative side to show. A map with both signs is a statistic of unknown scale (t, z,
    beta, a reconstruction); its threshold is the :data:`SIGNED_PERCENTILE` th percentile of
    ``|value|`` over its non-zero voxels, so the 5% of them farthest from 0 are shown whatever
    the statistic, where a fixed cut-off such as z > 3.1 would assume a z map.
    """
    finite = np.nan_to_num(np.asarray(data, dtype=np.float64))
    if not (finite < 0).any():
        return "non-negative", 0.0
    magnitude = np.abs(finite[finite != 0])
    return "signed", float(np.percentile(magnitude, SIGNED_PERCENTILE))


def glass_brain(image: nib.Nifti1Image, figure: plt.Figure, title: str | None = None) -> tuple[str, float]:
    """Draw ``image`` on ``figure`` as a glass brain thresholded by :func:`map_style`.

    A glass brain (nilearn ``plot_glass_brain``) is a maximum intensity projection, so no
    blob is hidden behind a slice. A non-negative map is drawn from 0 to its maximum with a
    sequential colour map, a signed one with positive values red and negative blue; voxels
    below the threshold are hidden. The service's page draws every upload this way.

    Returns
    -------
    (kind, threshold)
        What :func:`map_style` chose.
    """
    from nilearn.plotting import plot_glass_brain

    data = np.nan_to_num(image.get_fdata(dtype=np.float32))
    kind, threshold = map_style(data)
    if kind == "non-negative":
        plot_glass_brain(image, figure=figure, title=title, colorbar=True, cmap="YlOrRd", plot_abs=False,
                         threshold=ABOVE_ZERO, vmin=0.0, vmax=max(float(data.max()), ABOVE_ZERO))
    else:
        plot_glass_brain(image, figure=figure, title=title, colorbar=True, plot_abs=False, threshold=threshold)
    return kind, threshold


def plot_map(img: str | os.PathLike | nib.Nifti1Image, title: str, path: str | os.PathLike) -> MapFigure:
    """Draw a brain map to ``path``, thresholded by :func:`map_style` (:data:`THRESHOLD_RULE`).

    A non-negative map is drawn by :func:`glass_brain`. A signed map is drawn on three slices
    of the MNI152 template (nilearn ``plot_stat_map``) with positive values red, negative
    blue, and voxels below the threshold hidden.
    """
    from nilearn.plotting import plot_stat_map

    from niclip_ray.atlas.maps import load_map

    image = load_map(img, name=title)
    image = nib.Nifti1Image(np.nan_to_num(image.get_fdata(dtype=np.float32)), image.affine)
    figure = plt.figure(figsize=(8, 3))
    try:
        kind, threshold = map_style(image.get_fdata(dtype=np.float32))
        if kind == "non-negative":
            glass_brain(image, figure, title)
            caption = "Glass brain (maximum intensity projection) of every voxel above 0; the map has no negative values."
        else:
            plot_stat_map(image, figure=figure, title=title, display_mode="ortho", colorbar=True, draw_cross=False,
                          threshold=threshold)
            caption = (f"Voxels with |value| below {threshold:.3g} (the {SIGNED_PERCENTILE:g}th percentile of |value| "
                       "over the map's non-zero voxels) are hidden; positive red, negative blue.")
        with replacing(path) as tmp:
            figure.savefig(tmp, dpi=90)
    finally:
        plt.close(figure)
    return MapFigure(Path(path), kind, threshold, caption)


def read_curves(path: str | os.PathLike) -> pd.DataFrame:
    """Read training curves from a metrics JSONL file (one object per epoch).

    Each line holds at least ``fold, epoch, train_loss, val_loss``; other keys are kept.

    Raises
    ------
    InputError
        Missing file, a line that is not JSON, or missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training metrics not found: {path}")
    try:
        curves = pd.read_json(path, lines=True)
    except ValueError as exc:
        raise InputError(f"{path} is not JSON lines: {exc}") from exc
    return check_curves(curves, str(path))


def check_curves(curves: pd.DataFrame, name: str = "curves") -> pd.DataFrame:
    """Check the curve columns and return the rows sorted by fold and epoch."""
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise InputError(f"{name} lacks {', '.join(missing)}; each row needs {', '.join(CURVE_COLUMNS)}")
    return curves.sort_values(["fold", "epoch"]).reset_index(drop=True)


def plot_curves(curves: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Training and validation loss per epoch, one colour per fold (solid train, dashed validation)."""
    curves = check_curves(curves)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    try:
        colours = plt.get_cmap("tab10")
        for i, (fold, rows) in enumerate(curves.groupby("fold", sort=True)):
            colour = colours(i % 10)
            axes.plot(rows["epoch"], rows["train_loss"], color=colour, label=f"fold {fold} train")
            axes.plot(rows["epoch"], rows["val_loss"], color=colour, linestyle="--", label=f"fold {fold} val")
        axes.set_xlabel("epoch")
        axes.set_ylabel("InfoNCE loss")
        axes.legend(fontsize="small", ncol=2)
        figure.tight_layout()
        with replacing(path) as tmp:
            figure.savefig(tmp, dpi=90)
    finally:
        plt.close(figure)
    return Path(path)


def plot_metrics(summary: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Bar chart of hit@k per level and backend, with the permutation null mean ± std as markers."""
    levels = [lvl for lvl in LEVELS if lvl in set(summary["level"])]
    backends = sorted(set(summary["backend"]))
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(levels) * max(1, len(backends)) / 2, 3.5))
    try:
        width = 0.8 / max(1, len(backends))
        table = summary.set_index(["backend", "level"])
        for b, backend in enumerate(backends):
            x = np.arange(len(levels)) + b * width
            rows = table.reindex([(backend, lvl) for lvl in levels])
            axes.bar(x, rows["mean_hit_at_k"].to_numpy(dtype=float), width, label=backend)
            if "null_mean_hit_at_k" in rows:
                axes.errorbar(x, rows["null_mean_hit_at_k"].to_numpy(dtype=float),
                              yerr=rows["null_std_hit_at_k"].to_numpy(dtype=float), fmt="k_", capsize=3)
        axes.set_xticks(np.arange(len(levels)) + width * (len(backends) - 1) / 2)
        axes.set_xticklabels([f"{lvl}\n(k={int(table.xs(lvl, level='level')['k'].iloc[0])})" for lvl in levels])
        axes.set_ylabel("hit@k (black: null mean ± std)")
        axes.set_ylim(0, 1.05)
        axes.legend(fontsize="small")
        figure.tight_layout()
        with replacing(path) as tmp:
            figure.savefig(tmp, dpi=90)
    finally:
        plt.close(figure)
    return Path(path)


def plot_posterior_prior(terms: list[str], posterior: np.ndarray, prior: np.ndarray, title: str,
                         path: str | os.PathLike) -> Path:
    """Horizontal bars of each top task's posterior beside its prior, the first term on top.

    A posterior bar shorter than its prior bar is a task the map argues against (Bayes
    factor below 1): the prior, not the map, keeps it among the top terms.
    """
    y = np.arange(len(terms))
    figure, axes = plt.subplots(figsize=(6.5, 0.9 + 0.42 * len(terms)))
    try:
        axes.barh(y - 0.2, posterior, 0.4, label="posterior", color="#3366cc")
        axes.barh(y + 0.2, prior, 0.4, label="prior", color="#aaaaaa")
        axes.set_yticks(y)
        axes.set_yticklabels([term if len(term) <= 40 else term[:39] + "…" for term in terms], fontsize="small")
        axes.invert_yaxis()
        axes.set_xlabel("probability")
        axes.set_title(title, fontsize="medium")
        axes.legend(fontsize="small", loc="lower right")
        figure.tight_layout()
        with replacing(path) as tmp:
            figure.savefig(tmp, dpi=90)
    finally:
        plt.close(figure)
    return Path(path)
