"""Figures of the report, written as PNG files (matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report is drawn in batch jobs and workers without a display

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray.decoding.schema import LEVELS
from niclip_ray.errors import InputError

CURVE_COLUMNS = ("fold", "epoch", "train_loss", "val_loss")


def plot_map(img: str | os.PathLike | nib.Nifti1Image, title: str, path: str | os.PathLike) -> Path:
    """Draw a statistical map on the MNI152 template (nilearn ``plot_stat_map``) to ``path``."""
    from nilearn.plotting import plot_stat_map

    from niclip_ray.atlas.maps import load_map

    image = load_map(img, name=title)
    data = np.nan_to_num(image.get_fdata(dtype=np.float32))
    image = nib.Nifti1Image(data, image.affine)
    figure = plt.figure(figsize=(8, 3))
    try:
        plot_stat_map(image, figure=figure, title=title, display_mode="ortho", colorbar=True, draw_cross=False)
        figure.savefig(path, dpi=90)
    finally:
        plt.close(figure)
    return Path(path)


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
        figure.savefig(path, dpi=90)
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
        figure.savefig(path, dpi=90)
    finally:
        plt.close(figure)
    return Path(path)
