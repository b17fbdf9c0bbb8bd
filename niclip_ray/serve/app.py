"""The Serve deployment: a FastAPI ingress around one :class:`Decoder` per replica.

Each replica loads the bundle and builds the atlas projector once, in its constructor.
Decode requests from all clients are gathered by ``@serve.batch`` and run as one
vectorised :meth:`~niclip_ray.decoding.decoder.Decoder.decode_features` call, in a worker
thread so the replica keeps accepting requests (which form the next batch) meanwhile.
With a study index, each replica also loads one :class:`~niclip_ray.retrieval.Index` and
answers ``/v1/search/image`` and ``/v1/search/text`` with its numbers.
"""

import asyncio
import hmac
import json
import logging
import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from starlette.requests import Request as StarletteRequest

from niclip_ray.atlas.maps import load_map
from niclip_ray.atlas.resample import on_grid
from niclip_ray.decoding.decoder import Decoder, nonfinite_maps
from niclip_ray.decoding.ranking import DEFAULT_RANK_BY, parse_rank_by
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.retrieval import Index
from niclip_ray.serve.page import glass_brain_png, render_page
from niclip_ray.serve.responses import decode_response, parse_levels, search_response
from niclip_ray.serve.uploads import MAX_SERVE_MAP_BYTES, MAX_UPLOAD_BYTES, UploadError, map_checks, read_nifti

log = logging.getLogger(__name__)
#: The query each replica answers before it reports ready (loads the text model and the map builder).
WARM_UP_QUERY = "working memory"
#: Most maps decoded in one batch, and how long a batch waits to fill.
MAX_BATCH_SIZE = 8
BATCH_WAIT_S = 0.01


@dataclass(frozen=True)
class ServiceSettings:
    """What each replica needs: the bundle, its atlas, the token, the upload and map limits, an optional index."""

    bundle: str
    atlas_dir: str | None = None
    allow_atlas_mismatch: bool = False
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_map_bytes: int = MAX_SERVE_MAP_BYTES
    index: str | None = None

#: The 404 reason of the search endpoints when the service runs without a study index.
NO_INDEX = "this service has no study index; start it with 'niclip-ray serve --index DIR' to search"


api = FastAPI(title="niclip-ray", docs_url=None, redoc_url=None, openapi_url=None)


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` under the Bearer scheme.

    The scheme is case-insensitive (``bearer``, ``BEARER``: RFC 9110, 11.1); the token is
    compared in constant time.
    """
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the upload is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"the upload is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload_bytes(request: Request, limit: int) -> bytes:
    """The image bytes: the raw body, or the single file of a multipart upload."""
    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await StarletteRequest(request.scope, receive=replay).form(max_files=1, max_fields=8)
    files = [value for value in form.values() if hasattr(value, "read")]
    if len(files) != 1:
        raise UploadError(400, "a multipart upload needs exactly one file part")
    return await files[0].read()


@serve.deployment(name="NiclipDecoder", max_ongoing_requests=32, health_check_period_s=5,
                  health_check_timeout_s=30, graceful_shutdown_timeout_s=5)
@serve.ingress(api)
class DecodeService:
    """One replica: the decoder, the page, the counters behind ``/metrics``."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.decoder = Decoder(settings.bundle, topk=None, atlas_dir=settings.atlas_dir,
                               allow_atlas_mismatch=settings.allow_atlas_mismatch)
        self.decoder.projector  # noqa: B018 - build it now, not in the first request
        self.description = self.decoder.describe()
        self.page = render_page(self.description)
        self.study_index = None
        self.loaded = threading.Event()
        if settings.index is not None:
            self.study_index = Index(settings.index, self.decoder.bundle, atlas_dir=settings.atlas_dir)
            threading.Thread(target=self.warm_up, name="warm-up", daemon=True).start()
        else:
            self.loaded.set()
        self.counters = {"requests": 0, "decoded": 0, "rejected": 0, "batches": 0, "batched_maps": 0,
                         "decode_seconds": 0.0, "searches": 0}

    def warm_up(self) -> None:
        """Answer one text query in the background: the ridge, the text model and the map builder load here.

        ``/healthz`` says ``loading`` (503) until it is done, so the first real search is fast.
        """
        try:
            self.study_index.search_text(WARM_UP_QUERY, 1)
        except Exception:  # a query that fails here fails the same way, with its reason, when asked
            log.exception("the study index did not warm up")
        finally:
            self.loaded.set()

    def authorize(self, request: Request) -> None:
        """401 unless the request carries the configured bearer token (when one is configured)."""
        token = self.settings.token
        if token is None:
            return
        if not bearer_matches(request.headers.get("authorization", ""), token):
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is required",
                                headers={"WWW-Authenticate": "Bearer"})

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        if not self.loaded.is_set():
            return JSONResponse({"status": "loading", "detail": "loading the study index's text model"}, 503)
        return JSONResponse({"status": "ok"})

    @api.get("/", response_class=HTMLResponse)
    async def index(self, request: Request) -> str:
        self.authorize(request)
        return self.page

    @api.get("/v1/model")
    async def model(self, request: Request) -> dict:
        self.authorize(request)
        manifest = json.loads((Path(self.settings.bundle) / "manifest.json").read_text())
        return {"manifest": manifest, "describe": self.description,
                "vocabulary_sizes": self.description["n_terms"]}

    @api.get("/metrics")
    async def metrics(self, request: Request) -> dict:
        self.authorize(request)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"replica": serve.get_replica_context().replica_id.unique_id, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "peak_rss_mib": round(peak_kib / 1024, 1), **self.counters}

    @api.post("/v1/decode")
    async def decode(
        self,
        request: Request,
        levels: str = "task,concept,domain",
        top_k: int = Query(10, ge=1, le=10_000),
        hierarchical: bool | None = None,
        plot: bool = False,
        rank_by: str = DEFAULT_RANK_BY,
    ) -> dict:
        self.authorize(request)
        self.counters["requests"] += 1
        try:
            if hierarchical and not self.decoder.hierarchical:
                raise UploadError(422, "hierarchical=true needs a bundle with an ontology")
            try:
                wanted = parse_levels(levels, self.decoder.hierarchical if hierarchical is None else hierarchical)
                rank_by = parse_rank_by(rank_by)
            except (ValueError, ParameterError) as exc:
                raise UploadError(422, str(exc)) from exc
            img = read_nifti(await upload_bytes(request, self.settings.max_upload_bytes),
                             self.settings.max_upload_bytes, self.settings.max_map_bytes)
            result = await self.decode_batch((img, rank_by))
            if isinstance(result, InputError):
                raise UploadError(422, str(result))
        except UploadError as exc:
            self.counters["rejected"] += 1
            raise HTTPException(exc.status, exc.reason) from exc
        frame, checks = result
        body = decode_response(frame, wanted, top_k, checks, {
            "bundle_sha256": self.description["bundle_sha256"], "atlas_id": self.description["atlas_id"],
            "logit_scale": self.description["logit_scale"], "rank_by": rank_by})
        if plot:
            body["plot"] = await asyncio.to_thread(glass_brain_png, load_map(img, name="upload"))
        self.counters["decoded"] += 1
        return body

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def decode_batch(self, requests: list) -> list:
        """Decode a batch of ``(upload, rank_by)``; each result is ``(frame, checks)`` or the map's InputError."""
        return await asyncio.to_thread(self.decode_many, requests)

    def decode_many(self, requests: list) -> list:
        """Project each upload, then score them together, once per ``rank_by`` asked (no hub flags across clients)."""
        start = time.perf_counter()
        images = [img for img, _ in requests]
        betas, results = {}, []
        for i, img in enumerate(images):
            try:
                betas[i] = self.decoder.project(img, name="upload")
                results.append(None)
            except InputError as exc:
                results.append(exc)
        frames = []
        for rank_by in dict.fromkeys(requests[i][1] for i in betas):
            chosen = [i for i in betas if requests[i][1] == rank_by]
            frames.append(self.decoder.decode_features(np.stack([betas[i] for i in chosen]),
                                                       [f"upload-{i}" for i in chosen], rank_by=rank_by,
                                                       flag_hubs=False))
        if frames:
            frame = pd.concat(frames, ignore_index=True)
            nonfinite = nonfinite_maps(frame)
            for i, img in enumerate(images):
                if results[i] is None and f"upload-{i}" in nonfinite:
                    results[i] = InputError(nonfinite[f"upload-{i}"])
                elif results[i] is None:
                    shape = img.shape[:3]
                    results[i] = (frame[frame["map_id"] == f"upload-{i}"].reset_index(drop=True),
                                  map_checks(img, resampled=not on_grid(shape, img.affine, self.decoder.projector.grid)))
        self.counters["batches"] += 1
        self.counters["batched_maps"] += len(images)
        self.counters["decode_seconds"] += time.perf_counter() - start
        return results

    async def require_index(self) -> Index:
        """The study index once it has warmed up, or 404 with the reason when the service has none."""
        if self.study_index is None:
            raise HTTPException(404, NO_INDEX)
        await asyncio.to_thread(self.loaded.wait)
        return self.study_index

    @api.post("/v1/search/image")
    async def search_image(
        self, request: Request, top_k: int = Query(20, ge=1, le=10_000), against: str = "text",
    ) -> dict:
        self.authorize(request)
        index = await self.require_index()
        self.counters["requests"] += 1
        try:
            if against not in ("text", "image"):
                raise UploadError(422, f"against must be text or image, got {against!r}")
            img = read_nifti(await upload_bytes(request, self.settings.max_upload_bytes),
                             self.settings.max_upload_bytes, self.settings.max_map_bytes)
            try:
                table = await asyncio.to_thread(index.search_image, img, top_k, against, "upload")
            except InputError as exc:
                raise UploadError(422, str(exc)) from exc
        except UploadError as exc:
            self.counters["rejected"] += 1
            raise HTTPException(exc.status, exc.reason) from exc
        self.counters["searches"] += 1
        return search_response(table, against)

    @api.get("/v1/search/text")
    async def search_text(
        self, request: Request, q: str = "", top_k: int = Query(20, ge=1, le=10_000), against: str = "text",
    ) -> dict:
        self.authorize(request)
        index = await self.require_index()
        self.counters["requests"] += 1
        if against not in ("text", "image"):
            self.counters["rejected"] += 1
            raise HTTPException(422, f"against must be text or image, got {against!r}")
        try:
            match = await asyncio.to_thread(index.search_text, q, top_k, against)
        except InputError as exc:
            self.counters["rejected"] += 1
            raise HTTPException(422, str(exc)) from exc
        self.counters["searches"] += 1
        return {**search_response(match.studies, against), "query": q,
                "atlas_id": self.description["atlas_id"], "coefficients": match.coefficients.tolist()}
