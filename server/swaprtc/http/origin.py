"""Reject state-changing requests sent by pages of another origin (cross-site request forgery).

A browser names the page's origin in ``Origin`` on every cross-origin request and on same-origin
POST/DELETE. The request is allowed when that origin's host is the host the request was sent to,
or when it is in the allow-list (a reverse proxy that serves the page under another name).
Requests without ``Origin`` come from non-browser clients (curl, tests) and are allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from swaprtc.http.errors import json_error, never

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def normalise_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str, host: str | None, allowed: frozenset[str]) -> bool:
    if normalise_origin(origin) in allowed:
        return True
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    return parts.netloc.lower() == host.strip().lower()


def origin_middleware(
    allowed_origins: Iterable[str] = (), exempt: Callable[[web.Request], bool] = never
) -> Any:
    allowed = frozenset(normalise_origin(o) for o in allowed_origins)

    @web.middleware
    async def check_origin(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            request.method not in SAFE_METHODS
            and not exempt(request)
            and origin is not None
            and not origin_allowed(origin, request.headers.get("Host"), allowed)
        ):
            return json_error(
                403,
                "bad_origin",
                f"requests from the origin {origin[:200]!r} are not allowed "
                "(add it to --allowed-origins when a reverse proxy serves the page)",
            )
        return await handler(request)

    return check_origin
