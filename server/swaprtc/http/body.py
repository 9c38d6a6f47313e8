"""Reading request bodies within limits: a byte cap on the WHOLE body (every multipart part
counts, not only the wanted one), a deadline for slow senders, and JSON with bounded size and
nesting depth (deep nesting would exhaust the parser's recursion: a 500 instead of a 400)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection
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


async def _read_form(
    request: web.BaseRequest,
    budget: BodyBudget,
    file_field: str,
    file_limit: int,
    text_fields: Collection[str],
    text_limit: int,
) -> tuple[bytes, dict[str, str]]:
    reader = await request.multipart()
    found: bytes | None = None
    texts: dict[str, str] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise MissingPartError("nested multipart bodies are not supported")
        if part.name == file_field and found is None:
            keep, limit = True, file_limit
        elif part.name in text_fields:
            keep, limit = True, text_limit
        else:
            keep, limit = False, 0
        data = bytearray()
        # Every part is read through the budget, wanted or not: junk parts count too.
        while chunk := await part.read_chunk(CHUNK):
            budget.check()
            if keep:
                data += chunk
                if len(data) > limit:
                    raise BodyTooLargeError(f"the field {part.name} is larger than {limit} bytes")
        if part.name == file_field and found is None:
            found = bytes(data)
        elif keep and part.name is not None:
            texts[part.name] = data.decode("utf-8", "replace").strip()
    if found is None:
        raise MissingPartError(f'no multipart field named "{file_field}"')
    return found, texts


async def read_multipart_form(
    request: web.BaseRequest,
    file_field: str,
    file_limit: int,
    timeout_s: float,
    text_fields: Collection[str] = (),
    text_limit: int = 64,
) -> tuple[bytes, dict[str, str]]:
    """The field ``file_field`` (at most ``file_limit`` bytes) and the small ``text_fields`` of a
    multipart body. The WHOLE body is capped at ``file_limit`` plus a little room for headers,
    boundaries and the text fields: unknown parts are read (and counted), never skipped free."""
    budget = BodyBudget(request, file_limit + MULTIPART_SLACK)
    try:
        result: tuple[bytes, dict[str, str]] = await _with_deadline(
            _read_form(request, budget, file_field, file_limit, text_fields, text_limit), timeout_s
        )
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
