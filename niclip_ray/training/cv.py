"""Cross-validated training run: features in, per-fold scores and a model bundle out.

Output directory::

    OUT/
      train_config.json   what the run was started with (a rerun must match it)
      splits.json         study_ids order and each fold's train/val/test indices
      metrics.json        per-fold best epoch, validation and test scores
      runs/fold-K/        Ray Train run of fold K (checkpoints, metrics.jsonl, resumes.jsonl)
      bundle/             model bundle for 'niclip-ray decode'

The bundle holds the weights of the fold with the lowest best validation loss: the test
folds are never used to choose anything (the reference picks the best test recall).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_json
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text_fingerprint import text_model_sha256
from niclip_ray.model.bundle import TEXT_MODEL_SHA256
from niclip_ray.training.data import PairedFeatures
from niclip_ray.training.loop import TrainConfig
from niclip_ray.training.ray_train import FoldOutcome, ScalingOptions, run_folds
from niclip_ray.training.splits import FoldSplit, kfold_splits

RUNS = "runs"
BUNDLE = "bundle"


@dataclass
class TrainReport:
    """What a cross-validated run produced."""

    folds: list[FoldOutcome]
    selected_fold: int
    bundle: Path
    out_dir: Path

    def summary(self) -> list[dict]:
        """One row per fold: best epoch, best validation loss and test metrics."""
        return [fold_summary(f) for f in self.folds]


def fold_summary(outcome: FoldOutcome) -> dict:
    """JSON-friendly scores of one fold."""
    best = outcome.history[outcome.best_epoch]
    return {
        "fold": outcome.fold,
        "epochs_run": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "val_loss": best["val_loss"],
        "val_recall@10": best["val_recall@10"],
        **{f"test_{k}": v for k, v in outcome.test.items()},
    }


def _run_identity(pairs: PairedFeatures, config: TrainConfig, n_folds: int) -> dict:
    """Everything a resumed run must share with the first (``epochs`` may grow)."""
    ids = hashlib.sha256("\n".join(pairs.study_ids).encode()).hexdigest()
    settings = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    return {**settings, "folds": n_folds, "section": pairs.section, "text_model_id": pairs.text_model_id,
            "atlas_id": pairs.atlas_id, "n_studies": len(pairs), "study_ids_sha256": ids}


def _check_resumable(out_dir: Path, identity: dict) -> None:
    path = out_dir / "train_config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
        if changed:
            raise ParameterError(
                "out_dir",
                f"{out_dir} holds a run with different {', '.join(changed)}; "
                "use a new one, or the same settings to resume it",
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, identity, indent=2)


def _write_splits(out_dir: Path, pairs: PairedFeatures, splits: list[FoldSplit]) -> None:
    payload = {"study_ids": pairs.study_ids, "folds": [{"fold": s.fold, **s.as_dict()} for s in splits]}
    write_json(out_dir / "splits.json", payload)


def train_cross_validated(
    pairs: PairedFeatures,
    out_dir: str | Path,
    config: TrainConfig,
    scaling: ScalingOptions,
    n_folds: int = 5,
    max_concurrent_folds: int = 1,
    vocabulary: pd.DataFrame | None = None,
    print_epochs: bool = True,
) -> TrainReport:
    """Fit every fold with Ray Train, score its test rows, and write the bundle.

    Must run inside :func:`niclip_ray.runtime.ray_session`. Rerunning with the same
    ``out_dir`` and settings resumes each fold from its last checkpoint.

    Raises
    ------
    InputError
        Too few studies for the folds.
    ParameterError
        ``out_dir`` holds a run with other settings, or a setting is out of range.
    """
    from niclip_ray.model.bundle import save_bundle

    out_dir = Path(out_dir).resolve()  # Ray Train workers run in another working directory
    splits = kfold_splits(len(pairs), n_folds, seed=config.seed)
    _check_resumable(out_dir, _run_identity(pairs, config, n_folds))
    _write_splits(out_dir, pairs, splits)
    outcomes = run_folds(
        pairs.images, pairs.texts, splits, config, scaling, out_dir / RUNS, max_concurrent_folds, print_epochs
    )
    summaries = [fold_summary(o) for o in outcomes]
    write_json(out_dir / "metrics.json", {"folds": summaries}, indent=2)
    chosen = min(outcomes, key=lambda o: o.history[o.best_epoch]["val_loss"])
    split = splits[chosen.fold]
    ids = pairs.study_ids
    bundle_config = {
        "dropout": config.dropout,
        "logit_scale": None,
        "text_model_id": pairs.text_model_id,
        **_text_model_fingerprint(pairs.text_model_id),
        "atlas_id": pairs.atlas_id,
        "atlas_dim": int(pairs.images.shape[1]),
        "training": {
            **config.to_dict(),
            "section": pairs.section,
            "folds": n_folds,
            "num_workers": scaling.num_workers,
            "use_gpu": scaling.use_gpu,
            "selected_fold": chosen.fold,
            "selection": "lowest best validation loss",
            "split": {part: [ids[i] for i in getattr(split, part)] for part in ("train", "val", "test")},
        },
        "metrics": {"folds": summaries, "selected": fold_summary(chosen)},
    }
    bundle = save_bundle(out_dir / BUNDLE, chosen.best_state, bundle_config, vocabulary=vocabulary)
    return TrainReport(outcomes, chosen.fold, bundle, out_dir)


def _text_model_fingerprint(model_id: str) -> dict:
    """``{"text_model_sha256": ...}`` when the text model's files are here, else nothing.

    On a cluster the model may live only on the GPU workers that embedded the texts; the
    bundle then records the id alone, and retrieval checks the id.
    """
    try:
        return {TEXT_MODEL_SHA256: text_model_sha256(model_id)}
    except InputError:
        return {}
