"""The real n-back/flanker corpus, ingested once for the baseline tests."""

import pytest

from niclip_ray.corpus import ingest


@pytest.fixture(scope="session")
def nback_flanker(tmp_path_factory):
    """(corpus directory, Corpus) of NiMARE's shipped n-back/flanker studyset."""
    root = tmp_path_factory.mktemp("corpus")
    corpus, _ = ingest("nimare:nback_vs_flanker", root)
    return root, corpus


@pytest.fixture(scope="session")
def tiny_split(nback_flanker):
    """20 training studies (10 n-back, 10 flanker) and two held-out ones (n-back, flanker)."""
    studies = nback_flanker[1].studies
    nback = sorted(studies.loc[studies["label"] == "n-back", "study_id"])
    flanker = sorted(studies.loc[studies["label"] == "flanker", "study_id"])
    return nback[:10] + flanker[:10], [nback[-1], flanker[-1]]
