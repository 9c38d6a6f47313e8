"""Abuse and access through real sockets: capacity that bare sessions cannot hold, per-client rate
limits, the access token, the Origin check, security headers."""

from __future__ import annotations

import html.parser
from pathlib import Path
from typing import Any

import numpy as np
from swaprtc.http.rate_limit import RateLimiter
from swaprtc.http.security_headers import CONTENT_SECURITY_POLICY
from swaprtc.rtc.app import SESSIONS
from swaprtc.settings import Settings

from tests.http_support import UNLIMITED, assert_error, served
from tests.rtc_client import SwapClient, SyntheticCamera

WEB = Path(__file__).resolve().parent.parent / "web"


async def test_bare_sessions_cannot_lock_out_a_real_user(astronaut_bgr: np.ndarray) -> None:
    """Two bare POST /api/session calls on a 2-session server: a real client still connects.
    Once two clients are connected, the next one is told the server is full (503, Retry-After)."""
    async with served(Settings(max_sessions=2, **UNLIMITED)) as api:
        await api.session()
        await api.session()
        async with SwapClient(api.base) as first, SwapClient(api.base) as second:
            await first.create_session()
            await first.connect(SyntheticCamera(astronaut_bgr))
            await second.connect(SyntheticCamera(astronaut_bgr))  # a session made by the offer
            assert first.received and second.received
            status, body, headers = await api.call("POST", "/api/session")
            assert_error(status, body, 503, "too_many_sessions")
            assert int(headers["Retry-After"]) >= 1
            assert api.app[SESSIONS].active() == 2
        await api.app[SESSIONS].close_all()


async def test_unconnected_sessions_are_limited_per_client() -> None:
    settings = Settings(max_pending_per_client=2, **UNLIMITED)
    async with served(settings) as api:
        await api.session()
        await api.session()
        status, body, headers = await api.call("POST", "/api/session")
        assert_error(status, body, 429, "too_many_sessions")
        assert int(headers["Retry-After"]) >= 1


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 1.0  # one a second: the next token in 1 s
    assert limiter.acquire("b") == 0.0  # other clients have their own bucket
    now[0] = 1.0
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert RateLimiter(per_minute=0, burst=1).acquire("a") == 0.0  # 0 = unlimited


async def test_session_offer_and_source_calls_are_rate_limited_per_client() -> None:
    settings = Settings(
        rate_session_per_min=6,
        rate_offer_per_min=6,
        rate_source_per_min=6,
        rate_burst=2,
        trusted_proxies=("127.0.0.1",),
        max_pending_per_client=10,
    )
    async with served(settings) as api:
        sid = await api.session()
        await api.session()
        status, body, headers = await api.call("POST", "/api/session")
        assert_error(status, body, 429, "rate_limited")
        assert 1 <= int(headers["Retry-After"]) <= 10
        # Another client (named by a trusted proxy) has its own budget.
        assert (await api.call("POST", "/api/session", headers={"X-Forwarded-For": "203.0.113.9"}))[0] == 201
        for path, kwargs in (
            ("/api/offer", {"json": {"type": "offer"}}),
            ("/api/source", {"data": b"x", "headers": {"X-Session-Id": sid}}),
        ):
            codes = [(await api.call("POST", path, **kwargs))[1]["error"]["code"] for _ in range(3)]
            assert codes[2] == "rate_limited", (path, codes)
            assert "rate_limited" not in codes[:2]
        # Re-picking a face decodes the photo again: limited like uploads.
        select = {"json": {"face": 0}, "headers": {"X-Session-Id": sid}}
        codes = [
            (await api.call("POST", "/api/source/select", **select))[1]["error"]["code"] for _ in range(3)
        ]
        assert codes[2] == "rate_limited" and "rate_limited" not in codes[:2], codes
        # Reads are not limited.
        for _ in range(5):
            assert (await api.call("GET", "/api/info"))[0] == 200


async def test_an_untrusted_peer_cannot_pick_its_address() -> None:
    settings = Settings(rate_session_per_min=6, rate_burst=1, max_pending_per_client=10)
    async with served(settings) as api:
        await api.session()
        status, body, _ = await api.call("POST", "/api/session", headers={"X-Forwarded-For": "198.51.100.1"})
        assert_error(status, body, 429, "rate_limited")


async def test_the_token_is_required_by_every_api_call() -> None:
    token = "s3cret-Token"
    async with served(Settings(token=token, **UNLIMITED)) as api:
        for method, path in (
            ("GET", "/api/info"),
            ("GET", "/api/health"),
            ("POST", "/api/session"),
            ("POST", "/api/offer"),
            ("POST", "/api/source"),
            ("DELETE", "/api/source"),
            ("DELETE", "/api/session"),
            ("GET", "/api/nothing"),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Swaprtc-Token": token + "x"}):
                status, body, answer_headers = await api.call(method, path, headers=headers)
                assert_error(status, body, 401, "unauthorized")
                assert answer_headers["WWW-Authenticate"].startswith("Bearer")
        assert (await api.call("GET", "/api/info", headers={"Authorization": f"Bearer {token}"}))[0] == 200
        status, body, _ = await api.call("POST", "/api/session", headers={"X-Swaprtc-Token": token})
        assert status == 201, body
        # The page itself loads without the token (it asks for one).
        async with api.http.get(api.base + "/") as resp:
            assert resp.status == 200


async def test_cross_origin_state_changes_are_refused() -> None:
    settings = Settings(allowed_origins=("https://proxy.example",), **UNLIMITED)
    async with served(settings) as api:
        host = api.base.removeprefix("http://")
        for origin in ("http://evil.example", "null", f"http://{host}.evil.example", "file://"):
            for method, path in (
                ("POST", "/api/session"),
                ("DELETE", "/api/session"),
                ("POST", "/api/offer"),
            ):
                status, body, _ = await api.call(method, path, headers={"Origin": origin})
                assert_error(status, body, 403, "bad_origin")
        assert api.app[SESSIONS].sessions == {}
        assert (await api.call("POST", "/api/session", headers={"Origin": f"http://{host}"}))[0] == 201
        assert (await api.call("POST", "/api/session", headers={"Origin": "https://proxy.example"}))[0] == 201
        assert (await api.call("POST", "/api/session"))[0] == 201  # no Origin: not a browser
        # Reads from anywhere are harmless.
        assert (await api.call("GET", "/api/info", headers={"Origin": "http://evil.example"}))[0] == 200


async def test_security_headers_and_a_server_header_without_versions() -> None:
    async with served(Settings()) as api:
        for path in ("/", "/app.js", "/api/info", "/api/nothing", "/missing.png"):
            async with api.http.get(api.base + path) as resp:
                headers = resp.headers
            csp = headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert "camera=(self)" in headers["Permissions-Policy"]
            assert headers["Server"] == "swaprtc", headers["Server"]
    assert CONTENT_SECURITY_POLICY


class ScriptAudit(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.problems += [f"{tag} {name}" for name in names if name.startswith("on")]
        self.problems += [f"{tag} style" for name in names if name == "style"]
        self.problems += [
            f"{tag} javascript: url" for _, v in attrs if v and v.strip().lower().startswith("javascript:")
        ]
        if tag == "script":
            self.in_script = True
            if "src" not in names:
                self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append("script body")


def test_the_pages_have_no_inline_script_or_style() -> None:
    """The CSP forbids inline script and style: no page may need them."""
    pages = sorted(WEB.glob("*.html"))
    assert WEB / "index.html" in pages
    for page in pages:
        audit = ScriptAudit()
        audit.feed(page.read_text())
        assert audit.problems == [], page.name


async def test_busy_answers_always_carry_retry_after() -> None:
    """A 429 or 503 from any handler (here one that sets no hint) still tells when to retry."""
    from aiohttp import web
    from swaprtc.http.errors import json_error
    from swaprtc.http.security_headers import install_security_headers

    from tests.rtc_client import serve_in_process

    async def busy(request: web.Request) -> web.Response:
        return json_error(int(request.query["status"]), "busy", "later")

    app = web.Application()
    app.router.add_get("/busy", busy)
    install_security_headers(app)
    import aiohttp

    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        for status in (429, 503):
            async with http.get(f"{base}/busy?status={status}") as resp:
                assert resp.status == status and int(resp.headers["Retry-After"]) >= 1
        async with http.get(f"{base}/busy?status=400") as resp:
            assert "Retry-After" not in resp.headers


class NoWorkers:
    """A worker pool with no worker ready: whatever passes the checks gets 503."""

    def __init__(self) -> None:
        import asyncio

        self.admission = asyncio.Lock()
        self.workers: list[Any] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def loads(self) -> dict[int, int]:
        return {}

    def get(self, index: int | None) -> None:
        return None

    def any_ready(self) -> None:
        return None

    async def describe(self) -> list[Any]:
        return []


async def test_the_supervisor_applies_the_same_checks_in_front() -> None:
    """With --workers > 1 the supervisor is the public port: token, Origin, rate limits and
    headers are enforced there, before any worker is asked."""
    import aiohttp
    from swaprtc.workers.supervisor import create_supervisor_app

    from tests.rtc_client import serve_in_process

    settings = Settings(token="tok", rate_session_per_min=6, rate_burst=1, rate_offer_per_min=0, workers="2")
    app = create_supervisor_app(settings, NoWorkers())  # type: ignore[arg-type]
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        async with http.post(base + "/api/session") as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
            assert resp.headers["Server"] == "swaprtc" and "Content-Security-Policy" in resp.headers
        auth = {"Authorization": "Bearer tok"}
        async with http.post(
            base + "/api/session", headers={**auth, "Origin": "http://evil.example"}
        ) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "bad_origin"
        async with http.post(base + "/api/session", headers=auth) as resp:
            assert resp.status == 503  # passed the checks; no worker is ready
        # The supervisor looks into offer bodies for a session id: never a RecursionError 500.
        for body in (b"[" * 100_000, b"[" * 60_000 + b"]" * 60_000, b'{"a":' * 5000):
            async with http.post(base + "/api/offer", headers=auth, data=body) as resp:
                assert resp.status == 503, await resp.text()
        async with http.post(base + "/api/session", headers=auth) as resp:
            assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited"
            assert int(resp.headers["Retry-After"]) >= 1


async def test_offers_that_never_connect_are_bounded() -> None:
    """An offer whose ICE can never complete (no candidates) holds a capacity slot only for
    CONNECTING_S, and counts among its address's unconnected sessions meanwhile."""
    from swaprtc.rtc.session import CONNECTING_S

    from tests.http_support import real_offer_lines

    sdp = "\r\n".join(line for line in await real_offer_lines() if not line.startswith("a=candidate"))
    async with served(Settings(max_sessions=8, max_pending_per_client=2, **UNLIMITED)) as api:
        manager = api.app[SESSIONS]
        sessions = []
        for _ in range(2):
            status, body, _ = await api.call("POST", "/api/offer", json={"sdp": sdp, "type": "offer"})
            assert status == 200, body
            sessions.append(manager.get(body["session_id"]))
        assert manager.active() == 2
        status, body, _ = await api.call("POST", "/api/session")
        assert_error(status, body, 429, "too_many_sessions")
        for session in sessions:
            assert session.offered_at is not None
            settings = manager.settings
            soon = session.offered_at + CONNECTING_S - 1
            assert session.expired(soon, settings.session_idle_s, manager.never_connected_s) is None
        removed = await manager.sweep(now=max(s.offered_at or 0 for s in sessions) + CONNECTING_S + 1)
        assert sorted(removed) == sorted(s.id for s in sessions)
        assert manager.active() == 0
        assert (await api.call("POST", "/api/session"))[0] == 201
