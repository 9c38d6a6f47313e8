"""Forward one HTTP request to a worker over its unix socket, and its answer back."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

FORWARDED_FOR = "X-Forwarded-For"
# Hop-by-hop headers and those aiohttp sets itself; the client's X-Forwarded-For is never passed on.
DROP_REQUEST = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    FORWARDED_FOR.lower(),
}
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "date"}


async def forward(client: aiohttp.ClientSession, request: web.Request, body: bytes) -> web.Response:
    """Raises ``aiohttp.ClientError`` when the worker cannot be reached or hangs up.

    ``X-Forwarded-For`` becomes the address the supervisor saw (whatever the client sent is
    dropped); workers trust it only on their unix socket (swaprtc.http.client_address)."""
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in DROP_REQUEST)
    headers[FORWARDED_FOR] = request.remote or ""
    async with client.request(
        request.method,
        URL("http://worker" + request.raw_path, encoded=True),
        headers=headers,
        data=body if body else None,
        allow_redirects=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
    ) as resp:
        payload = await resp.read()
        out = CIMultiDict((k, v) for k, v in resp.headers.items() if k.lower() not in DROP_RESPONSE)
        return web.Response(status=resp.status, body=payload, headers=out)
