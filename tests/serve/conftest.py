"""One decoding service for the serve tests: a toy bundle on the embedded Ray, a free port, a token."""

import socket

import pytest
import requests

from niclip_ray._testing import toy_bundle
from niclip_ray.runtime import RayOptions, ray_session

TOKEN = "s3cret-test-token"
MAX_UPLOAD = 1024 * 1024  # 1 MiB: the motor map (186 kB) fits, the tests' junk does not


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return toy_bundle(root / "bundle", root / "atlas"), root / "atlas"


@pytest.fixture(scope="package")
def service(toy):
    """``(url, session)``: the running service and an HTTP session that sends the token."""
    from ray import serve

    from niclip_ray.serve.app import ServiceSettings
    from niclip_ray.serve.control import start_service

    bundle, atlas = toy
    settings = ServiceSettings(bundle=str(bundle), atlas_dir=str(atlas), token=TOKEN, max_upload_bytes=MAX_UPLOAD)
    with ray_session(RayOptions(num_cpus=2, quiet=True)):
        try:
            url = start_service(settings, port=free_port(), replicas=1, ready_timeout_s=240)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            yield url, session
        finally:
            serve.shutdown()
