"""Console progress: per item, rich on a terminal, plain lines (no ANSI codes) otherwise."""

import io
import json

from rich.console import Console

from niclip_ray.cli.console import ItemProgress
from niclip_ray.training.progress import follow_epochs


def test_progress_in_a_non_terminal_is_plain_text():
    buffer = io.StringIO()
    with ItemProgress("decode", 3, "maps", console=Console(file=buffer, force_terminal=False)) as progress:
        progress.advance(2)
        progress.advance(1, " (last)")
    assert buffer.getvalue() == "decode: 2/3 maps\ndecode: 3/3 maps (last)\n"
    assert "\x1b" not in buffer.getvalue()


def test_quiet_progress_prints_nothing():
    buffer = io.StringIO()
    with ItemProgress("decode", 3, "maps", quiet=True, console=Console(file=buffer)) as progress:
        progress.advance(3)
    assert buffer.getvalue() == "" and progress.done == 3


def test_training_progress_follows_the_epoch_rows(tmp_path):
    buffer = io.StringIO()
    run = tmp_path / "fold-0"
    run.mkdir()
    rows = [{"fold": 0, "epoch": e, "val_loss": 2.0 - e, "val_recall@10": 0.25 * e} for e in range(2)]
    console = Console(file=buffer, force_terminal=False)
    with ItemProgress("train", 4, "epochs", console=console) as progress, follow_epochs(tmp_path, progress, 0.05):
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = buffer.getvalue().splitlines()
    assert lines == ["train: 1/4 epochs (fold 0, val loss 2.0000, val recall@10 0.000)",
                     "train: 2/4 epochs (fold 0, val loss 1.0000, val recall@10 0.250)"]


def test_training_progress_says_when_a_fold_goes_on_from_its_checkpoint(tmp_path):
    run = tmp_path / "fold-1"
    run.mkdir()
    earlier = json.dumps({"fold": 1, "epochs_kept": 1, "last_epoch": 0}) + "\n"  # an earlier run's
    (run / "resumes.jsonl").write_text(earlier)
    said = []
    with ItemProgress("train", 4, "epochs", quiet=True) as progress, \
            follow_epochs(tmp_path, progress, 0.05, on_resume=said.append):
        (run / "resumes.jsonl").write_text(earlier + json.dumps({"fold": 1, "epochs_kept": 3, "last_epoch": 2}) + "\n")
    assert said == ["fold 1: went on from its checkpoint after epoch 3 (3 epochs kept, not rerun)"]


def test_plain_stage_progress_is_throttled_but_always_shows_the_end():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False)
    with ItemProgress("images", 0, "studies", console=console, every_s=60) as progress:
        for _ in range(10):
            progress.on_items(1, 10)  # the stage tells the total with each count
    assert buffer.getvalue() == "images: 1/10 studies\nimages: 10/10 studies\n"


def test_terminal_progress_bar_learns_the_total_from_the_stage():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with ItemProgress("images", 0, "studies", console=console) as progress:
        progress.on_items(4, 6)
        progress.on_items(2, 6)
    assert progress.done == 6 and "6/6" in buffer.getvalue()


def test_many_maps_are_summarised_by_their_top_task(capsys):
    import pandas as pd

    from niclip_ray.cli.console import print_top_tasks

    rows = pd.DataFrame({"map_id": ["m2", "m2", "m1", "m3", "m1"], "level": ["task", "task", "task", "task", "concept"],
                         "rank": [1, 2, 1, 1, 1], "term": ["n-back", "stroop", "rest", "tapping", "memory"],
                         "prob": [0.5, 0.25, 0.125, 0.75, 0.9]})
    print_top_tasks(rows, limit=2)
    assert capsys.readouterr().out.splitlines() == [
        "m1: rest (0.125)", "m2: n-back (0.500)", "... 1 more maps (all in the decode/ parts and CSVs)"]
