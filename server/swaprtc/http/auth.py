"""Optional access token: with one configured, every protected request must carry it.

The token travels in ``Authorization: Bearer <token>`` or ``X-Swaprtc-Token: <token>``, never in
the URL (URLs end up in logs and browser history). Comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from aiohttp import web

from swaprtc.http.errors import is_api_path, json_error, never

TOKEN_HEADER = "X-Swaprtc-Token"


def request_token(request: web.BaseRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get(TOKEN_HEADER)


def token_matches(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def token_middleware(
    token: str | None,
    protected: Callable[[str], bool] = is_api_path,
    exempt: Callable[[web.Request], bool] = never,
) -> Any:
    """Require ``token`` on requests whose path ``protected`` accepts (unless ``exempt``: checked
    already in front); no token, no check."""

    @web.middleware
    async def check_token(request: web.Request, handler: Any) -> web.StreamResponse:
        if (
            token
            and protected(request.path)
            and not exempt(request)
            and not token_matches(request_token(request), token)
        ):
            response = json_error(
                401,
                "unauthorized",
                "this server needs an access token (Authorization: Bearer <token> or X-Swaprtc-Token)",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="swaprtc"'
            return response
        return await handler(request)

    return check_token
