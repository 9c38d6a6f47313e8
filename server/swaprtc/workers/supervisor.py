"""The supervisor: the one process on the public port when ``--workers`` > 1.

It owns the port and TLS, admits new sessions to the least-loaded worker (global limit
``max_sessions``; over it, 503 with Retry-After), sends every request about a session to the worker
named in the session id, answers /api/health, /healthz, /readyz itself, merges the workers' /metrics
with a ``worker`` label and adds per-worker memory to /api/info. Media never passes through it: each
worker's aiortc binds its own UDP ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from swaprtc.http.body import read_body
from swaprtc.http.security_headers import install_security_headers
from swaprtc.rtc.app import MULTIPART_SLACK, access_middlewares, errors_middleware, json_error, run_public
from swaprtc.rtc.tls import tls_context
from swaprtc.settings import Settings
from swaprtc.workers.metrics import merge_scrapes
from swaprtc.workers.pool import Worker, WorkerPool
from swaprtc.workers.proxy import forward
from swaprtc.workers.routing import creates_session, request_session_id, worker_of

log = logging.getLogger(__name__)

POOL = web.AppKey("worker_pool", WorkerPool)
SETTINGS = web.AppKey("supervisor_settings", Settings)
RETRY_AFTER_S = 5


def unknown_session() -> web.Response:
    return json_error(404, "unknown_session", "unknown or expired session; create a new one")


def unavailable(code: str, message: str, status: int = 503) -> web.Response:
    response = json_error(status, code, message)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _to_worker(worker: Worker, request: web.Request, body: bytes, about_session: bool) -> web.Response:
    client = worker.client
    if client is None or not worker.ready:
        return unknown_session() if about_session else unavailable("worker_unavailable", "try again")
    try:
        return await forward(client, request, body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        if about_session and not worker.alive():
            return unknown_session()  # the worker died with the session
        log.warning("worker %d did not answer %s %s: %r", worker.index, request.method, request.path, exc)
        return unavailable("worker_unavailable", "the worker did not answer; try again", 502)


async def _admit(request: web.Request, body: bytes) -> web.Response:
    pool, settings = request.app[POOL], request.app[SETTINGS]
    async with pool.admission:
        loads = await pool.loads()
        if not loads:
            return unavailable("worker_unavailable", "no worker is ready; try again")
        if sum(load.live for load in loads.values()) >= settings.max_sessions:
            return unavailable(
                "over_capacity",
                f"the server is at its limit of {settings.max_sessions} sessions; try again later",
            )
        worker = pool.workers[min(loads, key=lambda i: (loads[i].sessions, i))]
        worker.pending += 1
    try:
        return await _to_worker(worker, request, body, about_session=False)
    finally:
        worker.pending -= 1


async def route(request: web.Request) -> web.StreamResponse:
    pool = request.app[POOL]
    # Capped like client_max_size, and a slow sender is cut off (408) instead of holding on.
    body = await read_body(request, request.client_max_size, request.app[SETTINGS].body_timeout_s)
    session_id = request_session_id(request, body)
    if creates_session(request, session_id):
        return await _admit(request, body)
    if session_id is not None:
        worker = pool.get(worker_of(session_id))
        if worker is None:
            return unknown_session()
        return await _to_worker(worker, request, body, about_session=True)
    worker = pool.any_ready()
    if worker is None:
        return unavailable("worker_unavailable", "no worker is ready; try again")
    return await _to_worker(worker, request, body, about_session=False)


async def info(request: web.Request) -> web.StreamResponse:
    response = await route(request)
    body = response.body if isinstance(response, web.Response) else None
    if response.status != 200 or not isinstance(body, bytes) or response.headers.get("Content-Encoding"):
        return response  # an error, or an encoding this supervisor does not unpack: as it is
    data = json.loads(body)
    data["workers"] = await request.app[POOL].describe()
    return web.json_response(data)


async def health(request: web.Request) -> web.Response:
    workers = await request.app[POOL].describe()
    ready = [w for w in workers if w["ready"]]
    return web.json_response(
        {"ok": bool(ready), "sessions": sum(w["sessions"] or 0 for w in ready), "workers": len(ready)},
        status=200 if ready else 503,
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Like one process's /readyz, for the whole server: at least one worker ready, not shutting
    down, and a free session slot under the global limit; 503 with Retry-After otherwise."""
    pool, settings = request.app[POOL], request.app[SETTINGS]
    loads = {} if pool.stopping else await pool.loads()
    sessions = sum(load.live for load in loads.values())
    body: dict[str, Any] = {
        "ready": True,
        "sessions": sessions,
        "max_sessions": settings.max_sessions,
        "workers_ready": len(loads),
        "workers": pool.count,
    }
    if pool.stopping:
        reason, message = "shutting_down", "the server is shutting down"
    elif not loads:
        reason, message = "starting", "no worker is ready yet"
    elif sessions >= settings.max_sessions:
        reason, message = "full", "every session slot is taken"
    else:
        return web.json_response(body)
    body["ready"] = False
    body["error"] = {"code": reason, "message": message}
    return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def metrics(request: web.Request) -> web.Response:
    pool = request.app[POOL]

    async def scrape(worker: Worker) -> str | None:
        if worker.client is None or not worker.ready:
            return None
        try:
            async with worker.client.get("http://worker/metrics") as resp:
                return await resp.text() if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError):
            return None

    texts = await asyncio.gather(*(scrape(w) for w in pool.workers))
    scrapes = {w.index: t for w, t in zip(pool.workers, texts, strict=True) if t is not None}
    if not scrapes:
        return json_error(503, "metrics_unavailable", "no worker served metrics")
    return web.Response(text=merge_scrapes(scrapes), content_type="text/plain", charset="utf-8")


def create_supervisor_app(settings: Settings, pool: WorkerPool) -> web.Application:
    """The same checks as one process, in front of the workers (so rate limits and admission are
    global): JSON errors, Origin allow-list, token, per-client rate limits, body limits, security
    headers. Workers let through what arrives from here over their private sockets."""
    app = web.Application(
        middlewares=[errors_middleware, *access_middlewares(settings)],
        client_max_size=settings.max_upload_bytes + MULTIPART_SLACK,
    )
    install_security_headers(app)
    app[POOL] = pool
    app[SETTINGS] = settings
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", route)

    async def start(app: web.Application) -> None:
        await pool.start()

    async def stop(app: web.Application) -> None:
        await pool.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app


def serve_supervised(settings: Settings, count: int) -> int:
    """Run the supervisor and ``count`` workers until SIGINT/SIGTERM, then drain every worker."""
    ssl_context = tls_context(settings)
    pool = WorkerPool(settings, count)
    app = create_supervisor_app(settings, pool)
    scheme = "https" if ssl_context else "http"
    log.info("supervisor: %d workers behind %s://%s:%d", count, scheme, settings.host, settings.port)
    return run_public(app, settings, ssl_context)
