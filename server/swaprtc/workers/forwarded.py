"""The client address, as the supervisor saw it, for a worker behind a private unix socket."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web

FORWARDED_FOR = "X-Forwarded-For"


def from_unix_socket(request: web.Request) -> bool:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return sock is not None and sock.family == socket.AF_UNIX


@web.middleware
async def forwarded_for_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Trust ``X-Forwarded-For`` only on the worker's private unix socket: only the supervisor
    can connect there, and it replaces whatever the client sent with the address it saw."""
    address = request.headers.get(FORWARDED_FOR)
    if address and from_unix_socket(request):
        request = request.clone(remote=address.split(",")[0].strip())
    return await handler(request)
