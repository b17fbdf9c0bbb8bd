"""Exceptions that the CLI turns into one clear line and a non-zero exit code."""


class NiclipError(Exception):
    """Base class for errors a user can act on (bad input, missing file, bad config)."""

    exit_code = 1


class InputError(NiclipError):
    """An input file, directory or value is missing, malformed or inconsistent."""


class ConfigError(NiclipError):
    """A configuration (cluster.yaml, run config, address) is invalid or unreachable."""


class StageFailed(NiclipError):
    """A pipeline stage finished with failed shards; finished work was kept."""
