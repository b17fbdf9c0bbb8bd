"""``niclip-ray train``: cross-validated CLIP training with Ray Train, written as a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import ItemProgress, err, out, say
from niclip_ray.cli.context import options


def train(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option(help="Image features directory (features/images).")],
    text: Annotated[Path, typer.Option(help="Text features directory (features/text).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory; rerun with the same one to resume.")],
    section: Annotated[str, typer.Option(help="Text section to train on (body or abstract).")] = "body",
    num_workers: Annotated[int, typer.Option(min=1, help="Ray Train (DDP) workers per fold.")] = 1,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="One GPU per worker (NCCL).")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 50,
    batch_size: Annotated[int, typer.Option(min=2, help="Global batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 5e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (all parameters).")] = 0.1,
    dropout: Annotated[float, typer.Option(help="Dropout of every block.")] = 0.5,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping patience on validation loss.")] = 10,
    folds: Annotated[int, typer.Option(min=2, help="Outer cross-validation folds.")] = 5,
    max_concurrent_folds: Annotated[int, typer.Option(min=1, help="Folds trained at the same time.")] = 1,
    max_failures: Annotated[int, typer.Option(min=0, help="Restarts of crashed workers per fold.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of splits, initialisation, shuffling, dropout.")] = 0,
    vocabulary: Annotated[
        Path | None, typer.Option(help="vocabulary.parquet to put in the bundle (else attach it later).")
    ] = None,
) -> None:
    """Train the CLIP heads on paired image/text features with k-fold cross-validation.

    Example: niclip-ray train --images work/features/images --text work/features/text --out work/train
    """
    from niclip_ray.model.vocabulary import read_vocabulary
    from niclip_ray.runtime import ray_session
    from niclip_ray.runtime.session import train_worker_share
    from niclip_ray.training.cv import RUNS, train_cross_validated
    from niclip_ray.training.data import load_pairs
    from niclip_ray.training.loop import TrainConfig
    from niclip_ray.training.progress import follow_epochs
    from niclip_ray.training.ray_train import ScalingOptions

    opts = options(ctx)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         dropout=dropout, patience=patience, seed=seed)
    vocab = read_vocabulary(vocabulary) if vocabulary is not None else None
    pairs = load_pairs(images, text, section=section)
    for side, missing in (("image", pairs.image_only), ("text", pairs.text_only)):
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            err.print(f"warning: {len(missing)} studies have {side} features only: {shown}", markup=False)
    if pairs.failed_images or pairs.failed_texts:
        err.print(f"warning: skipped {pairs.failed_images} failed image rows and {pairs.failed_texts} failed "
                  f"text rows", markup=False)
    say(f"{len(pairs)} paired studies ({pairs.section}, text dim {pairs.texts.shape[1]}, "
        f"image dim {pairs.images.shape[1]}), {folds} folds", quiet=opts.quiet)
    with ray_session(opts.ray_options(), log_dir=out_dir / "logs"):
        share = 1.0 if use_gpu else train_worker_share(num_workers, max_concurrent_folds)
        scaling = ScalingOptions(num_workers=num_workers, use_gpu=use_gpu, cpus_per_worker=share,
                                 max_failures=max_failures)
        with ItemProgress("train", folds * epochs, "epochs (at most)", quiet=opts.quiet) as progress, \
                follow_epochs(out_dir / RUNS, progress, on_resume=lambda line: say(line, quiet=opts.quiet)):
            report = train_cross_validated(pairs, out_dir, config, scaling, folds, max_concurrent_folds, vocab,
                                           print_epochs=False)
    table = Table(title="Test scores per fold (weights: best validation epoch)")
    for column in ("fold", "epochs", "best epoch", "val loss", "test R@10", "test R@100", "test mix&match"):
        table.add_column(column, justify="right")
    for row in report.summary():
        table.add_row(str(row["fold"]), str(row["epochs_run"]), str(row["best_epoch"] + 1), f"{row['val_loss']:.4f}",
                      f"{row['test_recall@10']:.3f}", f"{row['test_recall@100']:.3f}",
                      f"{row['test_mix&match']:.3f}")
    out.print(table)
    out.print(f"bundle: {report.bundle} (fold {report.selected_fold}, lowest validation loss)")
