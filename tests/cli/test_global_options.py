"""Global options after the command name, and flags shown without a type in --help."""

import pytest

from niclip_ray.cli.main import hoist_global_options, run


@pytest.mark.parametrize(("argv", "expected"), [
    (["decode", "m.nii.gz", "--model", "b", "-q"], ["-q", "decode", "m.nii.gz", "--model", "b"]),
    (["decode", "m.nii.gz", "--num-cpus", "2", "--out", "o"], ["--num-cpus", "2", "decode", "m.nii.gz", "--out", "o"]),
    (["--num-cpus", "1", "corpus", "ingest", "src", "--address=auto", "-v"],
     ["--num-cpus", "1", "--address=auto", "-v", "corpus", "ingest", "src"]),
    (["search", "text", "--", "-q"], ["search", "text", "--", "-q"]),  # nothing after -- moves
    (["-q", "info"], ["-q", "info"]),
    (["--help"], ["--help"]),
])
def test_global_options_after_the_command_move_before_it(argv, expected):
    assert hoist_global_options(argv) == expected


def test_quiet_after_the_command_quiets_it(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert run(["corpus", "ingest", "nimare:neurosynth_laird", "--out", str(corpus)]) == 0
    assert "studies" in capsys.readouterr().out
    assert run(["corpus", "ingest", "nimare:neurosynth_laird", "--out", str(tmp_path / "again"), "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_flags_show_no_type_in_help(capsys):
    assert run(["decode", "--help"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "--strict" in line or "--download" in line]
    assert len(lines) == 2 and not any("bool" in line.lower() for line in lines)
