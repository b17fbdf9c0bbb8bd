"""One decoding service for the serve tests: a toy bundle on the embedded Ray, a free port, a token.

The bundle's text head takes MiniLM's 384-d embeddings and records MiniLM as its text
model, so the same service also serves a study index of 12 real studies (``/v1/search/*``).
"""

import socket

import pytest
import requests

from niclip_ray._testing import toy_bundle
from niclip_ray.model.bundle import load_bundle, save_bundle
from niclip_ray.runtime import RayOptions, ray_session

TOKEN = "s3cret-test-token"
MAX_UPLOAD = 1024 * 1024  # 1 MiB: the motor map (186 kB) fits, the tests' junk does not
TEXT_MODEL = "all-minilm-l6-v2"
N_STUDIES = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    base = load_bundle(toy_bundle(root / "base", root / "atlas", text_dim=384))
    bundle = save_bundle(root / "bundle", base.state_dict, {**base.config, "text_model_id": TEXT_MODEL},
                         base.vocabulary, base.ontology, mask_file=base.mask_path)
    return bundle, root / "atlas"


@pytest.fixture(scope="package")
def studies(tmp_path_factory, toy):
    """``(corpus, features)``: 12 n-back/flanker studies with toy-atlas image and MiniLM text features."""
    from niclip_ray.atlas.difumo import load_atlas
    from niclip_ray.atlas.projection import get_projector
    from niclip_ray.corpus import ingest
    from niclip_ray.features.text import TextEmbedder
    from niclip_ray.pipelines.images import process_studies, study_items
    from niclip_ray.pipelines.text import process_texts, text_items
    from niclip_ray.tables import write_parquet_atomic

    root = tmp_path_factory.mktemp("serve-studies")
    full, _ = ingest("nimare:nback_vs_flanker", root / "full")
    corpus = root / "corpus"
    corpus.mkdir()
    chosen = full.studies.iloc[:N_STUDIES].assign(pmid=[str(31000000 + i) for i in range(N_STUDIES)])
    chosen.to_parquet(corpus / "studies.parquet", index=False)
    full.coordinates[full.coordinates["study_id"].isin(chosen["study_id"])].to_parquet(
        corpus / "coordinates.parquet", index=False)
    features = root / "features"
    projector = get_projector(load_atlas(64, data_dir=toy[1]))
    write_parquet_atomic(process_studies(study_items(corpus), projector), features / "images" / "part-00000.parquet")
    texts = process_texts(text_items(corpus, "abstract"), TextEmbedder(TEXT_MODEL, device="cpu"), "abstract")
    write_parquet_atomic(texts, features / "text" / "part-00000.parquet")
    return corpus, features


@pytest.fixture(scope="package")
def index_dir(tmp_path_factory):
    """Where the service fixture builds its study index (built there, inside its Ray session)."""
    return tmp_path_factory.mktemp("serve-index") / "index"


@pytest.fixture(scope="package")
def service(toy, studies, index_dir):
    """``(url, session)``: the running service and an HTTP session that sends the token."""
    from ray import serve

    from niclip_ray.pipelines.index import run as build_index
    from niclip_ray.serve.app import ServiceSettings
    from niclip_ray.serve.control import start_service

    bundle, atlas = toy
    with ray_session(RayOptions(num_cpus=2, quiet=True)):
        try:
            build_index(*studies, bundle, index_dir)
            settings = ServiceSettings(bundle=str(bundle), atlas_dir=str(atlas), token=TOKEN,
                                       max_upload_bytes=MAX_UPLOAD, index=str(index_dir))
            url = start_service(settings, port=free_port(), replicas=1, ready_timeout_s=240)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            yield url, session
        finally:
            serve.shutdown()
