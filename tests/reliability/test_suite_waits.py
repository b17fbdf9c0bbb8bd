"""The suite's own waits: a test's timeout stretches with the machine's load, and a timeout says it is one."""

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SLOW_TEST = """
import time
import pytest

@pytest.mark.timeout(1)
def test_slow_only_because_the_machine_is_loaded():
    time.sleep(2.5)
"""


@pytest.fixture
def suite(pytester):
    """A suite with our conftest and one test that takes 2.5 times its timeout."""
    pytester.makeconftest(Path(__file__).parents[1].joinpath("conftest.py").read_text())
    pytester.makepyfile(SLOW_TEST)
    return pytester


def test_on_a_loaded_machine_the_timeout_stretches(suite, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0 * (os.cpu_count() or 1), 0.0, 0.0))
    suite.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_on_a_quiet_machine_the_timeout_holds_and_says_it_is_the_machines(suite, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timeout of the machine, not a wrong result*"])
