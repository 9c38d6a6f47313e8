"""Reading request bodies within limits: a byte cap on the WHOLE body (every multipart part
counts, not only the wanted one), a deadline for slow senders, and JSON with bounded size and
nesting depth (deep nesting would exhaust the parser's recursion: a 500 instead of a 400)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import BodyPartReader, web

from swaprtc.errors import SwapRTCError

CHUNK = 64 * 1024
MAX_JSON_DEPTH = 32
MULTIPART_SLACK = 64 * 1024  # multipart headers and boundaries around the wanted part


class BodyTooLargeError(SwapRTCError):
    code = "too_large"
    http_status = 413


class SlowBodyError(SwapRTCError):
    code = "request_timeout"
    http_status = 408


class BadJsonError(SwapRTCError):
    code = "bad_json"


class MissingPartError(SwapRTCError):
    code = "missing_image"


def check_declared_length(request: web.BaseRequest, limit: int) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLargeError(
            f"the request body ({length} bytes) is larger than the limit of {limit} bytes"
        )


class BodyBudget:
    """Counts every byte read from one request body against ``limit``."""

    def __init__(self, request: web.BaseRequest, limit: int) -> None:
        self.request = request
        self.limit = limit
        check_declared_length(request, limit)

    def check(self) -> None:
        # total_bytes counts what the client sent (after chunked decoding), read or released.
        if self.request.content.total_bytes > self.limit:
            raise BodyTooLargeError(f"the request body is larger than the limit of {self.limit} bytes")


async def _with_deadline(coro: Any, timeout_s: float) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await coro
    except TimeoutError:
        raise SlowBodyError(f"the request body did not arrive within {timeout_s:g} s") from None


async def _read_all(request: web.BaseRequest, budget: BodyBudget) -> bytes:
    data = bytearray()
    while chunk := await request.content.read(CHUNK):
        data += chunk
        budget.check()
    return bytes(data)


async def read_body(request: web.BaseRequest, limit: int, timeout_s: float) -> bytes:
    """The raw body: at most ``limit`` bytes (413 ``too_large``), within ``timeout_s`` (408)."""
    budget = BodyBudget(request, limit)
    result: bytes = await _with_deadline(_read_all(request, budget), timeout_s)
    return result


async def _read_part(request: web.BaseRequest, name: str, budget: BodyBudget, part_limit: int) -> bytes:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        # Every part is read through the budget, wanted or not: junk parts count too.
        wanted = isinstance(part, BodyPartReader) and part.name == name
        data = bytearray()
        if isinstance(part, BodyPartReader):
            while chunk := await part.read_chunk(CHUNK):
                budget.check()
                if wanted:
                    data += chunk
                    if len(data) > part_limit:
                        raise BodyTooLargeError(f"the {name} is larger than the limit of {part_limit} bytes")
        else:
            raise MissingPartError("nested multipart bodies are not supported")
        if wanted:
            return bytes(data)
    raise MissingPartError(f'no multipart field named "{name}"')


async def read_multipart_field(
    request: web.BaseRequest, name: str, part_limit: int, timeout_s: float
) -> bytes:
    """The field ``name`` of a multipart body whose whole size is capped at ``part_limit`` plus
    a little room for headers and boundaries."""
    budget = BodyBudget(request, part_limit + MULTIPART_SLACK)
    try:
        result: bytes = await _with_deadline(_read_part(request, name, budget, part_limit), timeout_s)
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise MissingPartError(f"the multipart body could not be read: {exc}") from None
    return result


# A string token (its closing quote optional, so an unterminated string cannot make the regex
# backtrack: one linear pass) or a bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth(data: bytes, stop_above: int | None = None) -> int:
    """Deepest bracket nesting outside strings (one linear scan, no recursion); the scan ends
    early once the depth passes ``stop_above``."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and deepest > stop_above:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_json(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    if json_depth(data, max_depth) > max_depth:
        raise BadJsonError(f"the JSON body is nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadJsonError("the body is not valid JSON") from None


async def read_json(
    request: web.BaseRequest, limit: int, timeout_s: float, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    return parse_json(await read_body(request, limit, timeout_s), max_depth)
