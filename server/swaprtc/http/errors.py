"""JSON error answers and the middleware that turns exceptions into them.

Every error a client can cause is ``{"error": {"code": "<stable>", "message": "<human>"}}`` with
a 4xx status; only genuine server faults are a bare ``500 internal`` (logged here, no details).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from swaprtc.errors import SwapRTCError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    414: "uri_too_long",
    431: "headers_too_large",
}
# Raised by aiohttp while a handler reads a malformed body: a bad multipart part header
# (InvalidHeader), a Content-Encoding the body does not match (ContentEncodingError, and
# RequestPayloadError around it), a body shorter than its Content-Length. The client's fault.
BAD_BODY_ERRORS = (HttpProcessingError, RequestPayloadError)


class RetryLaterError(SwapRTCError):
    """An error the client may retry after ``retry_after_s`` seconds (429, 503)."""

    http_status = 503

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


def json_error(status: int, code: str, message: str, *, retry_after_s: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if retry_after_s is not None else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def error_response(exc: SwapRTCError) -> web.Response:
    return json_error(
        exc.http_status, exc.code, exc.message, retry_after_s=getattr(exc, "retry_after_s", None)
    )


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


def never(request: web.BaseRequest) -> bool:
    """The default ``exempt`` of the access middlewares: every request is checked."""
    return False


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors as JSON: stable codes for expected ones, a bare 500 (logged here) for the rest."""
    try:
        return await handler(request)
    except SwapRTCError as exc:
        response = error_response(exc)
        if exc.http_status in (408, 413) and request.body_exists and not request.content.is_eof():
            # An unread (too large or too slow) body: close rather than drain it.
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status >= 400:  # the page's missing files too: one error format everywhere
            return json_error(exc.status, HTTP_CODES.get(exc.status, "http_error"), exc.reason)
        raise
    except BAD_BODY_ERRORS as exc:
        log.info("bad request body in %s %s: %r", request.method, request.path, exc)
        response = json_error(
            400, "bad_request", "the request body could not be read (malformed or wrongly encoded)"
        )
        # The rest of the body cannot be read either: close the connection instead of draining it.
        response.force_close()
        return response
    except ConnectionError:
        # The client hung up (mid-upload, mid-request): nothing to answer, nothing went wrong here.
        # Answering (which fails quietly, the transport is gone) keeps aiohttp from logging a
        # traceback for it as an unhandled error.
        log.debug("client went away during %s %s", request.method, request.path)
        response = json_error(400, "client_gone", "the client closed the connection")
        response.force_close()
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal", "internal server error")
