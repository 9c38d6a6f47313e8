"""The aiohttp application: static page, JSON API (docs/API.md), signalling; and ``serve``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
from aiohttp import web

from swaprtc import __version__
from swaprtc.casting import DEFAULT_SOURCE
from swaprtc.engine import Engine
from swaprtc.errors import SwapRTCError
from swaprtc.http.auth import token_middleware
from swaprtc.http.body import MULTIPART_SLACK as MULTIPART_SLACK
from swaprtc.http.body import BadJsonError, read_body, read_json, read_multipart_form
from swaprtc.http.client_address import client_address, via_unix_socket
from swaprtc.http.errors import BAD_BODY_ERRORS
from swaprtc.http.errors import errors_middleware as errors_middleware
from swaprtc.http.errors import json_error as json_error
from swaprtc.http.origin import origin_middleware
from swaprtc.http.rate_limit import RateLimiter, rate_limit_middleware
from swaprtc.http.security_headers import install_security_headers
from swaprtc.http.server import HttpLimits, run_app
from swaprtc.label import LabelStyle, labeler_for
from swaprtc.observability.logs import session_context
from swaprtc.observability.metrics import CONTENT_TYPE, Metrics
from swaprtc.resources import resource_path
from swaprtc.rtc.ice import loopback_candidates, parse_ice_servers
from swaprtc.rtc.offer_check import check_size
from swaprtc.rtc.sdp import codec_mime
from swaprtc.rtc.session import BadOfferError, RtcPolicy, Session, SessionManager, UnknownSessionError
from swaprtc.rtc.sources import (
    BadFaceIndexError,
    BadSourceNameError,
    analyse_photo,
    check_name,
    parse_face_index,
    repick,
)
from swaprtc.rtc.tls import tls_context
from swaprtc.rtc.track import InferencePool
from swaprtc.rtc.upload_pool import UploadPool
from swaprtc.settings import Settings
from swaprtc.workers.memory import rss_bytes

log = logging.getLogger(__name__)

WEB_DIR = resource_path("web")
MAX_STATIC_PATH = 255  # longer names exist nowhere under web/; the OS would refuse them anyway

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
POOL = web.AppKey("pool", InferencePool)
UPLOADS = web.AppKey("uploads", UploadPool)
SESSIONS = web.AppKey("sessions", SessionManager)
ICE_FOR_BROWSER = web.AppKey("ice_for_browser", list)
METRICS = web.AppKey("metrics", Metrics)


def route_label(request: web.Request) -> str:
    """The route template (``/api/session``, ``static``), never the raw path: bounded cardinality."""
    route = request.match_info.route
    if route.resource is None:
        return "unmatched"
    return route.name or route.resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count every request by route template, method and the status it got."""
    status = 500
    try:
        # Each request starts with no session in its log context (a keep-alive connection runs
        # its requests in one task); handlers set it once they know the session.
        with session_context(None):
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before an answer
        raise
    finally:
        request.app[METRICS].http_request(route_label(request), request.method, status)


def session_id_of(request: web.Request) -> str | None:
    return request.headers.get("X-Session-Id") or request.query.get("session")


def engine_info(app: web.Application) -> dict[str, Any]:
    return dict(app[ENGINE].describe())


# --- handlers ------------------------------------------------------------------------------------
def client_of(request: web.Request) -> str:
    return client_address(request, request.app[SETTINGS].trusted_proxies)


async def create_session(request: web.Request) -> web.Response:
    session = request.app[SESSIONS].create(client_of(request))
    return web.json_response(
        {
            "session_id": session.id,
            "engine": engine_info(request.app),
            "ice_servers": request.app[ICE_FOR_BROWSER],
        },
        status=201,
    )


async def delete_session(request: web.Request) -> web.Response:
    """Idempotent: the server ends a session by itself when its peer connection closes, so the
    page's DELETE after Stop often finds it gone already; that is success too ("gone": true)."""
    session_id = session_id_of(request)
    if not session_id:
        raise UnknownSessionError("no session given (X-Session-Id header or ?session=)")
    removed = await request.app[SESSIONS].remove(session_id, "client")
    return web.json_response({"ok": True} if removed else {"ok": True, "gone": True})


async def offer(request: web.Request) -> web.Response:
    body = await json_object(request, '{"sdp": ..., "type": "offer"}')
    sdp, kind, session_id = body.get("sdp"), body.get("type"), body.get("session_id")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadOfferError("missing sdp")
    if kind != "offer":
        raise BadOfferError('type must be "offer"')
    check_size(sdp, request.app[SETTINGS].max_sdp_bytes)
    if session_id is not None and not isinstance(session_id, str):
        raise BadOfferError("session_id must be a string")
    manager = request.app[SESSIONS]
    created = session_id is None
    session = manager.create(client_of(request)) if created else manager.get(session_id)
    try:
        answer = await manager.connect(session, sdp)
    except SwapRTCError:
        if created:
            await manager.remove(session.id, "offer_rejected")
        raise
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": session.id})


FORM_FIELDS = ("face", "name")  # small text fields allowed beside the image in a multipart upload
FORM_FIELD_LIMIT = 64


async def read_upload(request: web.Request, settings: Settings) -> tuple[bytes, dict[str, str]]:
    """The image bytes and the form fields ``face``/``name`` (multipart), else the query's; the
    whole body is capped, every multipart part counted."""
    fields = {k: request.query[k] for k in FORM_FIELDS if k in request.query}
    limit, timeout_s = settings.max_upload_bytes, settings.body_timeout_s
    if not request.content_type.startswith("multipart/"):
        return await read_body(request, limit, timeout_s), fields
    image, texts = await read_multipart_form(
        request, "image", limit, timeout_s, FORM_FIELDS, FORM_FIELD_LIMIT
    )
    return image, {**fields, **texts}


def live_session(request: web.Request) -> Session:
    return request.app[SESSIONS].get(session_id_of(request))


async def put_source(request: web.Request) -> web.Response:
    uploads = request.app[METRICS].uploads
    try:
        response = await _put_source(request)
    except SwapRTCError as exc:
        uploads.labels(exc.code).inc()
        raise
    except BAD_BODY_ERRORS:
        uploads.labels("bad_request").inc()
        raise
    uploads.labels("ok").inc()
    return response


async def _put_source(request: web.Request) -> web.Response:
    app = request.app
    session = live_session(request)
    settings = app[SETTINGS]
    uploads = app[UPLOADS]
    with uploads.reserve(client_of(request)):
        data, fields = await read_upload(request, settings)
        name = check_name(fields.get("name") or DEFAULT_SOURCE)
        face = parse_face_index(fields.get("face"))
        session.sources.check_room(name)
        # The upload threads, not the inference executor: uploads never delay live frames.
        entry = await uploads.run(analyse_photo, app[ENGINE], name, data, settings.max_upload_pixels, face)
    if session.closed:
        raise UnknownSessionError("the session was closed during the upload")
    session.put_source(entry)
    log.info("session %s: source set (%d face(s) in the photo)", session.id[:8], len(entry.faces))
    return web.json_response(entry.response())


async def select_source(request: web.Request) -> web.Response:
    app = request.app
    session = live_session(request)
    body = await json_object(request, '{"name": "default", "face": 0}')
    name = body.get("name", DEFAULT_SOURCE)
    if not isinstance(name, str):
        raise BadSourceNameError("name must be a string")
    face = parse_face_index(body.get("face"))
    if face is None:
        raise BadFaceIndexError("face is required: the index of a face in the source's photo")
    entry = session.sources.get(check_name(name))
    with app[UPLOADS].reserve(client_of(request)):  # decodes the kept photo again
        picked = await app[UPLOADS].run(repick, app[ENGINE], entry, face, app[SETTINGS].max_upload_pixels)
    if session.closed:
        raise UnknownSessionError("the session was closed while the face was prepared")
    session.put_source(picked)
    return web.json_response(picked.response())


async def list_sources(request: web.Request) -> web.Response:
    return web.json_response(live_session(request).sources_json())


async def delete_source(request: web.Request) -> web.Response:
    session = live_session(request)
    name = request.query.get("name")
    session.remove_source(check_name(name) if name is not None else None)
    return web.json_response({"ok": True})


async def json_object(request: web.Request, example: str) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_json_bytes, settings.body_timeout_s)
    if not isinstance(body, dict):
        raise BadJsonError(f"the body must be a JSON object: {example}")
    return body


async def info(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "engine": engine_info(request.app),
            # The live settings keys this engine acts on: the page shows only these.
            "controls": list(request.app[ENGINE].describe().get("controls") or []),  # type: ignore[call-overload]
            "label": LabelStyle(settings.label_position, settings.label_opacity).to_json(settings.label),
            "ice_servers": request.app[ICE_FOR_BROWSER],
            "codec": settings.codec.lower(),
            # What the page asks its encoder for (RTCRtpSender.setParameters maxBitrate, bps).
            "max_bitrate": settings.max_bitrate,
            "version": __version__,
            "process": {"pid": os.getpid(), "rss_bytes": rss_bytes(os.getpid())},
        }
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sessions": len(request.app[SESSIONS].sessions)})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP. Nothing else is checked (a full server is alive)."""
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: models loaded (the engine exists before the app does), not shutting down, and a
    free session slot. 503 otherwise, so a load balancer sends new users elsewhere."""
    manager = request.app[SESSIONS]
    body: dict[str, Any] = {
        "ready": True,
        "engine": request.app[ENGINE].name,
        "sessions": len(manager.sessions),
        # Sessions holding a peer connection: what counts against max_sessions (a multi-worker
        # supervisor admits on these).
        "live": manager.active(),
        "max_sessions": manager.settings.max_sessions,
    }
    reason = "shutting_down" if manager.closing else None if manager.has_capacity() else "full"
    if reason is None:
        return web.json_response(body)
    body["ready"] = False
    body["error"] = {
        "code": reason,
        "message": "the server is shutting down" if manager.closing else "every session slot is taken",
    }
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


async def serve_metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


def static_handler(web_dir: Path) -> Any:
    root = web_dir.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        rel = request.match_info.get("path", "") or "index.html"
        if "\x00" in rel or len(rel) > MAX_STATIC_PATH:
            raise web.HTTPNotFound()
        try:
            target = (root / rel).resolve()
            found = target.is_relative_to(root) and target.is_file()
        except (OSError, ValueError):  # a name the file system rejects (too long, bad bytes)
            found = False
        if not found:
            raise web.HTTPNotFound()
        return web.FileResponse(target, headers={"Cache-Control": "no-cache"})

    return handle


# --- app -----------------------------------------------------------------------------------------
def access_middlewares(settings: Settings) -> list[Any]:
    """Origin check, access token and per-client rate limits, in that order (after the JSON
    errors middleware). With several workers the supervisor applies them on the public port (rate
    limits are then global); requests it forwards over a worker's private unix socket were checked
    there and pass."""
    burst = settings.rate_burst
    limits = {
        ("POST", "/api/session"): RateLimiter(settings.rate_session_per_min, burst),
        ("POST", "/api/offer"): RateLimiter(settings.rate_offer_per_min, burst),
        ("POST", "/api/source"): RateLimiter(settings.rate_source_per_min, burst),
        # A re-pick decodes the kept photo again: limited like uploads, in its own bucket.
        ("POST", "/api/source/select"): RateLimiter(settings.rate_source_per_min, burst),
    }
    return [
        origin_middleware(settings.allowed_origins, exempt=via_unix_socket),
        token_middleware(settings.token, exempt=via_unix_socket),
        rate_limit_middleware(limits, settings.trusted_proxies, exempt=via_unix_socket),
    ]


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        head_timeout_s=settings.header_timeout_s, keepalive_timeout_s=settings.keepalive_timeout_s
    )


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    web_dir: Path = WEB_DIR,
    deadline_s: float | None = None,
    never_connected_s: float | None = None,
    unused_s: float | None = None,
    metrics: Metrics | None = None,
    session_prefix: str = "",
) -> web.Application:
    """The whole service around an injected engine (any ``swaprtc.engine.Engine``) and this
    process's ``Metrics`` (a fresh one when not given).

    A worker process behind the supervisor passes its ``session_prefix`` (swaprtc.workers).
    """
    codec_mime(settings.codec)  # fail early on an unknown codec
    ice_servers = parse_ice_servers(settings.ice_servers)
    policy = RtcPolicy(
        ice_servers=tuple(ice_servers),
        codec=settings.codec.lower(),
        min_bitrate=settings.min_bitrate,
        start_bitrate=settings.start_bitrate,
        max_bitrate=settings.max_bitrate,
        deadline_s=deadline_s if deadline_s is not None else settings.swap_deadline_ms / 1000.0,
        labeler=labeler_for(settings.label, settings.label_position, settings.label_opacity),
    )
    threads = settings.inference_threads
    if engine.describe().get("batching"):
        # A batching engine's frames mostly wait for their batch: with fewer threads than sessions,
        # frames of different sessions could never be in one batch.
        threads = max(threads, settings.max_sessions)
    pool = InferencePool(threads)
    extra: dict[str, float] = {}
    if never_connected_s is not None:
        extra["never_connected_s"] = never_connected_s
    if unused_s is not None:
        extra["unused_s"] = unused_s
    metrics = metrics if metrics is not None else Metrics()
    metrics.describe_engine(__version__, engine.describe())
    metrics.session_capacity.set(settings.max_sessions)
    metrics.inference_threads.set(pool.threads)
    metrics.pixel_threads.set(cv2.getNumThreads())  # what this process really runs with
    app = web.Application(
        middlewares=[
            metrics_middleware,
            errors_middleware,
            *access_middlewares(settings),
        ],
        client_max_size=settings.max_upload_bytes + MULTIPART_SLACK,
    )
    install_security_headers(app)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[POOL] = pool
    app[UPLOADS] = UploadPool(
        settings.upload_threads, settings.max_queued_uploads, settings.max_uploads_per_client
    )
    app[METRICS] = metrics
    app[SESSIONS] = SessionManager(engine, pool, settings, policy, metrics, id_prefix=session_prefix, **extra)
    app[ICE_FOR_BROWSER] = [s.for_browser() for s in ice_servers]

    app.router.add_post("/api/session", create_session)
    app.router.add_delete("/api/session", delete_session)
    app.router.add_post("/api/offer", offer)
    app.router.add_post("/api/source", put_source)
    app.router.add_delete("/api/source", delete_source)
    app.router.add_post("/api/source/select", select_source)
    app.router.add_get("/api/sources", list_sources)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)
    serve_static = static_handler(web_dir)
    app.router.add_get("/", serve_static, name="static")
    app.router.add_get("/{path:(?!api/).+}", serve_static, name="static_file")

    app.on_startup.append(_on_startup)
    app.cleanup_ctx.append(_ice_loopback)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_startup(app: web.Application) -> None:
    app[SESSIONS].start()


async def _ice_loopback(app: web.Application) -> AsyncIterator[None]:
    """The loopback candidate patch (rtc/ice.py) for exactly as long as this app runs."""
    if not app[SETTINGS].ice_loopback:
        yield
        return
    with loopback_candidates():
        yield


async def _on_shutdown(app: web.Application) -> None:
    await app[SESSIONS].close_all()
    app[POOL].shutdown()
    app[UPLOADS].shutdown()


def configure_process(settings: Settings) -> None:
    """Process-wide library settings of a serving process (one process, or each worker).

    OpenCV's own thread pool fans each call out over every core and its workers spin between
    calls; in a server the sessions already run in parallel (executor threads, worker processes),
    so the pool only burns CPU (measured: 1-3 ms per 480p frame, docs/BENCHMARKS.md)."""
    cv2.setNumThreads(settings.pixel_threads)


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; shutdown closes every peer connection and session.

    With ``--workers`` > 1 a supervisor runs on the port instead, in front of worker processes.
    """
    from swaprtc.factory import build_engine

    if (count := settings.worker_count()) > 1:
        from swaprtc.workers.supervisor import serve_supervised

        return serve_supervised(settings, count)

    ssl_context = tls_context(settings)
    configure_process(settings)
    engine = build_engine(settings)
    log.info("engine: %s", json.dumps(engine.describe(), default=str))
    app = create_app(settings, engine)
    scheme = "https" if ssl_context else "http"
    log.info("serving %s on %s://%s:%d", WEB_DIR, scheme, settings.host, settings.port)
    if settings.token:
        log.info("every API call needs the access token (--token / SWAPRTC_TOKEN)")
    return run_public(app, settings, ssl_context)


def run_public(app: web.Application, settings: Settings, ssl_context: Any) -> int:
    """Serve ``app`` on the public host and port until SIGINT/SIGTERM."""
    try:
        run_app(app, http_limits(settings), host=settings.host, port=settings.port, ssl_context=ssl_context)
    except OSError as exc:
        raise SwapRTCError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", code="listen_failed"
        ) from None
    return 0
