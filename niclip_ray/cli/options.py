"""What the CLI shares between command modules: parameter names mapped to their flags."""

from __future__ import annotations

#: Parameters whose flag is not the parameter's own name with dashes.
FLAGS = {
    "n_folds": "--folds",
    "data_dir": "--atlas-dir",
    "n_permutations": "--permutations",
    "methods": "--method",
    "n_topics": "--gclda-topics",
    "n_regions": "--gclda-regions",
    "n_iters": "--gclda-iters",
}


def flag_for(param: str) -> str:
    """The command-line flag of the core parameter ``param`` (``text_features`` -> ``--text-features``)."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def user_message(exc: BaseException) -> str:
    """The one line shown for an error, with a named parameter shown as its flag."""
    from niclip_ray.errors import ParameterError

    if isinstance(exc, ParameterError):
        return f"{flag_for(exc.param)} {exc.problem}"
    return str(exc)
