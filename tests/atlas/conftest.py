"""A 64-component stand-in atlas, built once per machine in the stand-in cache."""

import pytest

from niclip_ray.atlas.difumo import build_standin, default_standin_dir, load_atlas


@pytest.fixture(scope="session")
def standin64():
    """The seed-0, 64-component stand-in, as an :class:`Atlas`."""
    build_standin(default_standin_dir(0), 64, seed=0)
    return load_atlas(64, data_dir=default_standin_dir(0))
