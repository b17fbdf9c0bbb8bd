"""Download progress: one bar per file on a terminal, throttled plain lines otherwise."""

import io

from rich.console import Console

from niclip_ray.cli.console import ByteProgress


def test_plain_lines_are_throttled_and_each_file_ends_once():
    buffer = io.StringIO()
    with ByteProgress(console=Console(file=buffer, force_terminal=False), every_s=3600) as progress:
        for done in (0, 500_000, 1_000_000, 1_000_000):
            progress("model.pth", done, 1_000_000)
        progress("vocabulary.txt", 2_000, 2_000)
    assert buffer.getvalue().splitlines() == ["model.pth: 0 bytes of 1.0 MB", "model.pth: 1.0 MB of 1.0 MB",
                                              "vocabulary.txt: 2.0 kB of 2.0 kB"]


def test_a_terminal_gets_a_bar_per_file_and_quiet_prints_nothing():
    buffer = io.StringIO()
    with ByteProgress(console=Console(file=buffer, force_terminal=True, width=100)) as progress:
        progress("model.pth", 1_000_000, 1_000_000)
        progress("prior.npy", 10, 20)
    text = buffer.getvalue()
    assert "model.pth" in text and "prior.npy" in text and "1.0/1.0 MB" in text
    quiet = io.StringIO()
    with ByteProgress(quiet=True, console=Console(file=quiet, force_terminal=True)) as progress:
        progress("model.pth", 1, 1)
    assert quiet.getvalue() == ""
