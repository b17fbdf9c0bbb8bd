"""Start, wait for, inspect and stop the Serve application (on whatever Ray is connected)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from niclip_ray.errors import ConfigError
from niclip_ray.runtime.session import actor_pool_shape, cluster_gpus
from niclip_ray.serve.app import DecodeService, ServiceSettings

APP_NAME = "niclip"
#: Request timeout of Serve's HTTP proxy, in seconds.
REQUEST_TIMEOUT_S = 60.0


def replica_resources(replicas: int) -> tuple[int, dict]:
    """``(n, ray_actor_options)``: CPU shares that leave half a CPU free; one GPU each when there are enough."""
    n, share = actor_pool_shape(replicas, cpus_per_actor=1.0)
    options = {"num_cpus": share}
    if cluster_gpus() >= n:
        options["num_gpus"] = 1
    return n, options


def proxy_location(host: str) -> str:
    """Where Serve runs HTTP proxies: the head alone for a loopback ``host``, else every replica's node.

    A proxy bound to loopback answers only on its own machine, so proxies on worker nodes
    would serve no one (and nodes sharing one machine would contend for the port). With an
    exposed ``host`` every node that holds a replica answers, for a load balancer in front.
    """
    return "HeadOnly" if host in ("127.0.0.1", "localhost", "::1") else "EveryNode"


def start_service(settings: ServiceSettings, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
                  ready_timeout_s: float = 300.0) -> str:
    """Deploy the application on the connected Ray and wait until it answers; returns its URL.

    Raises
    ------
    ConfigError
        When the replicas do not start (the bundle or atlas cannot be loaded) or the
        service does not answer ``/healthz`` within ``ready_timeout_s``.
    """
    from ray import serve

    n, actor_options = replica_resources(replicas)
    quiet = {"log_level": "WARNING"}  # no per-request access lines on the console
    serve.start(http_options={"host": host, "port": int(port), "request_timeout_s": REQUEST_TIMEOUT_S},
                proxy_location=proxy_location(host), logging_config=quiet)
    app = DecodeService.options(num_replicas=n, ray_actor_options=actor_options).bind(settings)
    try:
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False, logging_config=quiet)
    except RuntimeError as exc:
        raise ConfigError(f"the decoding service did not start: {str(exc).splitlines()[0]}") from exc
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{int(port)}"
    wait_ready(url, ready_timeout_s)
    return url


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll ``url/healthz`` until it answers 200, for at most ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"the decoding service at {url} did not answer /healthz within {timeout_s:g} s")
        time.sleep(0.25)


def service_status() -> dict:
    """The application's state and its replicas' states, from Serve (``{}`` when not deployed)."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return {}
    return {"status": _name(app.status),
            "deployments": {name: {"status": _name(d.status),
                                   "replicas": {_name(k): n for k, n in d.replica_states.items()}}
                            for name, d in app.deployments.items()}}


def _name(state) -> str:
    """An enum state's plain name (``RUNNING``)."""
    return str(getattr(state, "value", state))


def stop_service() -> bool:
    """Delete the application and shut Serve down; False when nothing was deployed."""
    from ray import serve

    deployed = APP_NAME in serve.status().applications
    serve.shutdown()
    return deployed
