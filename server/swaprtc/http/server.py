"""Serving an aiohttp app with read limits aiohttp itself lacks.

aiohttp times out idle keep-alive connections but not a request head that trickles in (slowloris:
one header byte a second holds a connection forever), and answers its own parser errors with
plain-text 400s logged as tracebacks. ``GuardedRequestHandler`` closes a connection whose request
head is not complete ``head_timeout_s`` after its first byte, and answers parser errors as JSON,
logged on one line. Body deadlines are enforced where bodies are read (swaprtc.http.body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestHandler

from swaprtc.http.errors import BAD_BODY_ERRORS, json_error

log = logging.getLogger(__name__)

CLIENT_FAULTS = (*BAD_BODY_ERRORS, ConnectionError)


@dataclass(frozen=True)
class HttpLimits:
    head_timeout_s: float = 10.0  # first byte of a request head to its end
    keepalive_timeout_s: float = 30.0  # idle keep-alive connections are closed after this
    max_line_size: int = 8190  # request line
    max_field_size: int = 8190  # one header
    lingering_time_s: float = 2.0  # how long an unread body is drained before closing

    def handler_kwargs(self) -> dict[str, Any]:
        return {
            "keepalive_timeout": self.keepalive_timeout_s,
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "lingering_time": self.lingering_time_s,
        }


def parser_error_code(exc: BaseException | None) -> str:
    if isinstance(exc, BadHttpMethod):
        return "bad_method"
    if isinstance(exc, LineTooLong):
        return "headers_too_large"
    return "bad_request"


class GuardedRequestHandler(RequestHandler):
    __slots__ = ("_busy", "_head_timeout_s", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._busy = False  # a complete request head is being handled

    def data_received(self, data: bytes) -> None:
        if data and not self._busy and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_timeout_s, self._head_timed_out)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # the parser completed a request head (or failed)
            self._busy = True
            self._cancel_head_timer()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._busy = False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._busy:
            return
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        log.info(
            "closing the connection from %s: request head incomplete after %g s", peer, self._head_timeout_s
        )
        self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp logs a body it fails to drain after the answer (a wrongly encoded body behind a
        # 401/429) as an unhandled exception with a traceback: it is the client's fault.
        exc = kw.get("exc_info")
        if isinstance(exc, CLIENT_FAULTS):
            log.info("dropped a connection after a bad request body: %r", exc)
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Errors raised outside the app's middlewares (mostly the HTTP parser's) as JSON."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is broken")
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            response = json_error(status, "internal", "internal server error")
        else:
            text = exc.message if isinstance(exc, HttpProcessingError) else (message or "bad request")
            log.info("bad HTTP request from %s: %s", request.remote, text[:200])
            response = json_error(
                status, parser_error_code(exc), f"the HTTP request is malformed: {text[:200]}"
            )
        response.headers["Server"] = "swaprtc"
        response.force_close()
        return response


class GuardedServer(web.Server):
    def __init__(self, handler: Any, *, head_timeout_s: float, **kwargs: Any) -> None:
        self._handler_options = {
            k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation", "loop")
        }
        super().__init__(handler, **kwargs)
        self._head_timeout_s = head_timeout_s

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(
            self, loop=self._loop, head_timeout_s=self._head_timeout_s, **self._handler_options
        )


class HardenedRunner(web.AppRunner):
    """An AppRunner whose connections are ``GuardedRequestHandler``s configured by ``limits``."""

    def __init__(
        self,
        app: web.Application,
        limits: HttpLimits | None = None,
        *,
        handle_signals: bool = False,
        shutdown_timeout: float = 60.0,
        access_log_class: type[AbstractAccessLogger] = AccessLogger,
        **handler_kwargs: Any,
    ) -> None:
        self.limits = limits or HttpLimits()
        self.handler_options: dict[str, Any] = {**self.limits.handler_kwargs(), **handler_kwargs}
        super().__init__(
            app,
            handle_signals=handle_signals,
            shutdown_timeout=shutdown_timeout,
            access_log_class=access_log_class,
            **self.handler_options,
        )
        self.handler_options["access_log_class"] = access_log_class

    async def _make_server(self) -> web.Server:
        # The app's own server (the app's startup runs here), rebuilt with the guarded handler.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            head_timeout_s=self.limits.head_timeout_s,
            **self.handler_options,
        )


async def _serve_forever(
    app: web.Application, limits: HttpLimits, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> None:
    runner = HardenedRunner(app, limits, handle_signals=True, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit
    finally:
        await runner.cleanup()


def run_app(
    app: web.Application,
    limits: HttpLimits,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Like ``web.run_app``: serve until SIGINT/SIGTERM, then shut the app down cleanly."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve_forever(app, limits, host, port, ssl_context))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
