"""``niclip-ray serve``: the decoder as an HTTP service on Ray Serve (embedded Ray or a cluster)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import say
from niclip_ray.cli.context import options

app = typer.Typer()


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option("--model", help="Model bundle directory (with a vocabulary).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; other than 127.0.0.1 exposes it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port.")] = 8000,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Decoder replicas (CPU share each).")] = 1,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding a token every request but /healthz must send as "
                     "'Authorization: Bearer TOKEN'."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload, MiB (413 above).")
    ] = 64.0,
    max_map_mb: Annotated[
        float, typer.Option("--max-map-mb", min=1, help="Largest map in memory, MiB: its voxels as stored plus "
                            "their float32 copy, checked on the header before any data is read (413 above).")
    ] = 512.0,
    atlas_dir: Annotated[Path | None, typer.Option("--atlas-dir", help="nilearn data dir with the atlas.")] = None,
    allow_atlas_mismatch: Annotated[
        bool, typer.Option("--allow-atlas-mismatch", help="Serve even if the atlas found is not the bundle's.")
    ] = False,
    index: Annotated[
        Path | None, typer.Option("--index", help="Study index (from `index build` with this bundle) to serve "
                                  "/v1/search/image and /v1/search/text.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="On a cluster (--address): leave the service running and return.")
    ] = False,
) -> None:
    """Run the decoding service until Ctrl-C or SIGTERM (or, with --detach on a cluster, in the background).

    Endpoints: POST /v1/decode (a .nii/.nii.gz body or multipart upload; query levels,
    top_k, hierarchical), GET /v1/model, GET /healthz, GET /metrics, and GET / (a page to
    upload a map and see its glass brain and ranked tasks, concepts and domains). With
    --index: POST /v1/search/image (a map body; query top_k, against=text|image) and
    GET /v1/search/text?q=QUERY&top_k= (nearest studies and the predicted map's atlas
    coefficients); without it they answer 404.
    Manage a detached service with `niclip-ray --address ADDR serve status|stop`.

    Example: niclip-ray serve --model work/demo/train/bundle --port 8000
    """
    if ctx.invoked_subcommand is not None:
        return
    from niclip_ray.errors import InputError
    from niclip_ray.pipelines.decode import validate
    from niclip_ray.runtime import ray_session
    from niclip_ray.serve.app import ServiceSettings
    from niclip_ray.serve.control import start_service, stop_service

    if model is None:
        raise InputError("--model is required: the bundle directory to serve")
    opts = options(ctx)
    if detach and not opts.address:
        raise InputError("--detach needs a cluster (--address): an embedded Ray ends with this command")
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise InputError(f"--token-file {token_file}: {exc.strerror or exc}") from exc
        if not token:
            raise InputError(f"--token-file {token_file} is empty")
    bundle = validate(model, atlas_dir, allow_atlas_mismatch)
    if index is not None:
        from niclip_ray.retrieval import Index

        Index(index, bundle, atlas_dir=atlas_dir)  # refuse a missing index or one of another bundle here
    settings = ServiceSettings(bundle=str(bundle), atlas_dir=str(atlas_dir) if atlas_dir else None,
                               allow_atlas_mismatch=allow_atlas_mismatch, token=token,
                               max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                               max_map_bytes=int(max_map_mb * 1024 * 1024),
                               index=str(Path(index).resolve()) if index is not None else None)
    with ray_session(opts.ray_options()):
        previous = signal.signal(signal.SIGTERM, _interrupt)  # after Ray's own handler: `kill PID` is Ctrl-C
        try:
            url = start_service(settings, host=host, port=port, replicas=replicas)
            say(f"serving {bundle} at {url}/ ({replicas} replica(s){', token required' if token else ''})")
            while not detach:
                time.sleep(1.0)
        except KeyboardInterrupt:
            say("stopping the service", quiet=opts.quiet)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if not detach:
                stop_service()


def _interrupt(signum, frame) -> None:
    """SIGTERM handler: stop the way Ctrl-C does (the service is shut down, exit 0, no traceback)."""
    raise KeyboardInterrupt


@app.command()
def status(ctx: typer.Context) -> None:
    """Show the service's state on the cluster given by --address."""
    from niclip_ray.runtime import ray_session
    from niclip_ray.serve.control import service_status

    _need_address(ctx)
    with ray_session(options(ctx).ray_options()):
        state = service_status()
    typer.echo("no niclip service is deployed" if not state else _format_status(state))


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the service on the cluster given by --address."""
    from niclip_ray.runtime import ray_session
    from niclip_ray.serve.control import stop_service

    _need_address(ctx)
    with ray_session(options(ctx).ray_options()):
        stopped = stop_service()
    typer.echo("service stopped" if stopped else "no niclip service was deployed")


def _need_address(ctx: typer.Context) -> None:
    from niclip_ray.errors import InputError

    if not options(ctx).address:
        raise InputError("serve status/stop need the cluster's --address")


def _format_status(state: dict) -> str:
    lines = [f"application: {state['status']}"]
    for name, deployment in state["deployments"].items():
        replicas = ", ".join(f"{k}: {v}" for k, v in deployment["replicas"].items())
        lines.append(f"  {name}: {deployment['status']} ({replicas or 'no replicas'})")
    return "\n".join(lines)
