"""Run configs (``jobs/*.yaml``): option defaults per command, and an ordered list of steps.

A run config is YAML shaped like the command tree, with options under their parameter
names (``out_dir`` for ``--out``)::

    corpus:
      ingest: {source: nimare:nback_vs_flanker, out_dir: work/corpus}
    embed:
      images: {corpus: work/corpus, out_dir: work/features/images, dim: 512}
    steps:
      - [corpus, ingest]
      - [embed, images]

``niclip-ray --config run.yaml embed images`` takes its defaults from ``embed.images``
(options on the command line still win); ``niclip-ray pipeline run.yaml`` runs ``steps``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from niclip_ray.errors import ConfigError


def load_run_config(path: str | Path) -> dict:
    """Read a run config and check its shape.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, or is not a mapping of command sections.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"run config not found: {path}")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a run config is a mapping of command sections")
    for key, value in config.items():
        if key == "steps":
            if not isinstance(value, list) or not all(isinstance(s, list) and s for s in value):
                raise ConfigError(f"{path}: 'steps' must be a list of command word lists, e.g. [embed, images]")
        elif not isinstance(value, dict):
            raise ConfigError(f"{path}: section '{key}' must be a mapping of options or sub-commands")
    return config


def default_map(config: dict) -> dict:
    """The part of a run config that click uses as option defaults."""
    return {key: value for key, value in config.items() if key != "steps"}
