"""Raw HTTP over a real socket, for requests an HTTP client library refuses to send (NUL bytes,
broken framing, bytes trickled slowly) and for reading exactly what the server answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def host_port(base: str) -> tuple[str, int]:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


async def read_response(reader: asyncio.StreamReader) -> RawResponse | None:
    """One response, or None when the server closed the connection without answering."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).strip() or b"0", 16):
            body += await reader.readexactly(size)
            await reader.readline()
    else:
        body = await reader.read()
    return RawResponse(status, headers, body)


async def send_raw(base: str, data: bytes, *, timeout: float = 10.0) -> RawResponse | None:
    """Send ``data`` on a fresh connection and read one response (None: closed unanswered)."""
    reader, writer = await asyncio.open_connection(*host_port(base))
    try:
        async with asyncio.timeout(timeout):
            writer.write(data)
            await writer.drain()
            try:
                return await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def request_bytes(
    method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"", host: str = "x"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    all_headers = dict(headers or {})
    if body and "Content-Length" not in all_headers and "Transfer-Encoding" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "surrogateescape") + body
