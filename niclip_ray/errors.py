"""Exceptions that the CLI turns into one clear line and a non-zero exit code."""


class NiclipError(Exception):
    """Base class for errors a user can act on (bad input, missing file, bad config)."""

    exit_code = 1


class InputError(NiclipError):
    """An input file, directory or value is missing, malformed or inconsistent."""


class ConfigError(NiclipError):
    """A configuration (cluster.yaml, run config, address) is invalid or unreachable."""


class OutputError(NiclipError):
    """An output file or directory cannot be written (disk full, over quota, read-only, not a directory)."""


class StageFailed(NiclipError):
    """A pipeline stage finished with failed shards; finished work was kept."""


class ParameterError(InputError):
    """A value given for a named parameter is invalid.

    Cores name the parameter as it is spelt in Python (``shard_size``); the CLI shows the
    flag a user typed (``--shard-size``), see :func:`niclip_ray.cli.options.flag_for`.

    Parameters
    ----------
    param : str
        The parameter's Python name.
    problem : str
        What is wrong with its value, phrased to follow the name ("must be at least 1, got 0").
    """

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.param = param
        self.problem = problem
