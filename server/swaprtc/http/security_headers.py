"""Security headers on every response, and a ``Server`` header without versions.

Installed as an ``on_response_prepare`` hook so static files, JSON answers and error pages all get
them. The page's CSP allows no inline script: web/index.html loads app.js as a module file.
"""

from __future__ import annotations

from aiohttp import web

SERVER_NAME = "swaprtc"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the inline favicon and the source thumbnails the API returns as data URLs.
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Busy answers without their own hint still tell clients when to come back.
DEFAULT_RETRY_AFTER_S = {429: "1", 503: "5"}


def set_security_headers(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = SERVER_NAME
    retry_after = DEFAULT_RETRY_AFTER_S.get(response.status)
    if retry_after is not None:
        response.headers.setdefault("Retry-After", retry_after)


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    set_security_headers(response)


def install_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(on_response_prepare)
