"""Which client a request comes from, for per-client limits.

``X-Forwarded-For`` is trusted only from a peer that is trusted to set it: a listed reverse proxy
address, or the multi-worker supervisor over a private unix socket. Anyone else could forge it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from aiohttp import web


def via_unix_socket(request: web.BaseRequest) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and getattr(sock, "family", None) == getattr(socket, "AF_UNIX", None)


def client_address(request: web.BaseRequest, trusted_proxies: Iterable[str] = ()) -> str:
    peer = request.remote or ""
    if via_unix_socket(request) or (peer and peer in set(trusted_proxies)):
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        if last:
            # The proxy appends the address it saw; earlier entries are the client's own claims.
            return last[:100]
    return peer or "unknown"
