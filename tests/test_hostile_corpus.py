"""A corpus of hostile requests sent through real sockets while a live aiortc session streams.

Every case must get a 4xx JSON error with a stable code (or, where HTTP cannot answer, a closed
connection), never a 5xx, and the live session must keep receiving frames throughout. Cases run a
few at a time so the whole corpus takes seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from swaprtc.rtc.app import SESSIONS, create_app
from swaprtc.settings import Settings

from tests.engine_doubles import FixedFaceDetector, PaintEngine
from tests.http_support import real_offer_lines, stray_byte_jpeg
from tests.raw_http import RawResponse, host_port, read_response, request_bytes, send_raw
from tests.rtc_client import SwapClient, SyntheticCamera, serve_in_process

CLOSED = 0  # "the server closed the connection without an answer" is acceptable for this case
TOKEN = "c0rpus-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = {
    "token": TOKEN,
    "max_upload_bytes": 200_000,
    "max_upload_pixels": 4_000_000,
    "max_json_bytes": 16 * 1024,
    "max_sdp_bytes": 8 * 1024,
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
    "rate_session_per_min": 0,
    "rate_offer_per_min": 0,
    "rate_source_per_min": 0,
    "max_pending_per_client": 50,
    "max_uploads_per_client": 50,  # the corpus sends several uploads at once from one address
}


@dataclass
class Case:
    name: str
    send: Callable[[str], Awaitable[RawResponse | None]]
    want: set[int]  # acceptable statuses; CLOSED for an unanswered, closed connection
    code: str | None = None  # the stable error code expected, when one is


def raw(name: str, data: bytes, want: set[int] | int, code: str | None = None) -> Case:
    return Case(name, lambda base: send_raw(base, data), {want} if isinstance(want, int) else want, code)


def req(
    name: str,
    method: str,
    path: str,
    want: set[int] | int,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    auth: dict[str, str] = AUTH,
) -> Case:
    return raw(name, request_bytes(method, path, headers={**auth, **(headers or {})}, body=body), want, code)


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def bmp_declaring(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\x00" * 64


def webp_declaring(width: int, height: int) -> bytes:
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, data in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n\r\n'.encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def slowloris(base: str) -> RawResponse | None:
    """A request head trickled one byte every 0.2 s: the server must hang up."""
    reader, writer = await asyncio.open_connection(*host_port(base))
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for byte in b"X-Slow: " + b"a" * 60:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    return None
            except TimeoutError:
                continue
        raise AssertionError("the server kept a trickling request head open for 12 s")
    except ConnectionError:
        return None
    finally:
        writer.close()


async def slow_body(base: str) -> RawResponse | None:
    """A JSON body that stops after 10 of its 500 declared bytes: 408, not a hung handler."""
    reader, writer = await asyncio.open_connection(*host_port(base))
    try:
        writer.write(
            request_bytes("POST", "/api/offer", headers={**AUTH, "Content-Length": "500"}) + b'{"sdp": "v'
        )
        await writer.drain()
        async with asyncio.timeout(8):
            return await read_response(reader)
    finally:
        writer.close()


async def hang_up_mid_upload(base: str, sid: str) -> RawResponse | None:
    _reader, writer = await asyncio.open_connection(*host_port(base))
    head = request_bytes(
        "POST",
        "/api/source",
        headers={**AUTH, "X-Session-Id": sid, "Content-Type": "image/jpeg", "Content-Length": "150000"},
    )
    writer.write(head + b"\xff\xd8\xff" + b"\x00" * 50_000)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    return None


def build_corpus(sid: str, live: str, sdp: str) -> list[Case]:
    def offer(name: str, body: bytes, want: int, code: str | None, **headers: str) -> Case:
        return req(
            name,
            "POST",
            "/api/offer",
            want,
            code,
            headers={"Content-Type": "application/json", **headers},
            body=body,
        )

    def upload(
        name: str, body: bytes, want: int, code: str | None, ctype: str = "image/jpeg", **extra: str
    ) -> Case:
        headers = {"X-Session-Id": sid, "Content-Type": ctype, **extra}
        return req(name, "POST", "/api/source", want, code, headers=headers, body=body)

    def sdp_with(old_prefix: str, line: str) -> str:
        return "\r\n".join(line if x.startswith(old_prefix) else x for x in sdp.split("\r\n"))

    def offer_json(text: str, **extra: str) -> bytes:
        import json

        return json.dumps({"sdp": text, "type": "offer", **extra}).encode()

    gradient = np.zeros((300, 400, 3), np.uint8)
    gradient[:] = np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None]
    bomb_png = cv2.imencode(".png", np.zeros((6000, 6000, 3), np.uint8))[1].tobytes()
    small_jpeg = cv2.imencode(".jpg", gradient)[1].tobytes()
    boundary = {"ctype": "multipart/form-data; boundary=XyZ"}
    audio_only = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    cases = [
        # --- JSON and the offer ---------------------------------------------------------------
        offer("[ x 100000", b"[" * 100_000, 413, "too_large"),
        offer("[ x 10000 (under the byte cap)", b"[" * 10_000, 400, "bad_json"),
        offer('{"a": x 3000', b'{"a":' * 3000, 400, "bad_json"),
        offer("not JSON", b"{not json", 400, "bad_json"),
        offer("JSON array", b'["sdp"]', 400, "bad_json"),
        offer("JSON string", b'"offer"', 400, "bad_json"),
        offer("JSON null", b"null", 400, "bad_json"),
        offer("invalid UTF-8", b'\xff\xfe{"sdp": 1}', 400, "bad_json"),
        offer("5000-digit integer", b'{"sdp": ' + b"9" * 5000 + b"}", 400, "bad_json"),
        offer("1e999999", b'{"sdp": "x", "type": "offer", "session_id": 1e999999}', 400, "bad_offer"),
        offer("sdp is a number", b'{"sdp": 5, "type": "offer"}', 400, "bad_offer"),
        offer("empty sdp", b'{"sdp": "", "type": "offer"}', 400, "bad_offer"),
        offer("type answer", offer_json(sdp).replace(b'"offer"', b'"answer"'), 400, "bad_offer"),
        offer("session_id unknown", offer_json(sdp, session_id="nope"), 404, "unknown_session"),
        offer("offer to the live session", offer_json(sdp, session_id=live), 409, "already_connected"),
        offer("garbage sdp", offer_json("garbage\r\nnot sdp"), 400, "bad_offer"),
        offer("NUL bytes in sdp", offer_json(sdp.replace("a=mid", "a=m\x00id")), 400, "bad_offer"),
        offer("audio-only sdp", offer_json(audio_only), 400, "bad_offer"),
        offer(
            "fingerprint ZZ",
            offer_json(sdp_with("a=fingerprint:", "a=fingerprint:sha-256 ZZ")),
            400,
            "bad_offer",
        ),
        offer(
            "fingerprint md9",
            offer_json(sdp_with("a=fingerprint:", "a=fingerprint:md9 AB:CD")),
            400,
            "bad_offer",
        ),
        offer(
            "ufrag 5000", offer_json(sdp_with("a=ice-ufrag:", "a=ice-ufrag:" + "u" * 5000)), 400, "bad_offer"
        ),
        offer(
            "ufrag with spaces", offer_json(sdp_with("a=ice-ufrag:", "a=ice-ufrag:a b c d")), 400, "bad_offer"
        ),
        offer("pwd 8 chars", offer_json(sdp_with("a=ice-pwd:", "a=ice-pwd:abcdefgh")), 400, "bad_offer"),
        offer("sdp over its cap", offer_json(sdp + "\r\na=x:" + "p" * 9000), 400, "bad_offer"),
        offer("json over its cap", offer_json(sdp + "\r\na=x:" + "p" * 20000), 413, "too_large"),
        offer("bogus gzip", b'{"sdp": "v=0"}', 400, "bad_request", **{"Content-Encoding": "gzip"}),
        offer("gzip bomb", gzip.compress(b"[" * 2_000_000), 413, "too_large", **{"Content-Encoding": "gzip"}),
        offer(
            "bad chunk size", b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request", **{"Transfer-Encoding": "chunked"}
        ),
        # --- uploads ----------------------------------------------------------------------------
        upload("not an image", b"\x00\x01 not an image" * 10, 400, "not_an_image"),
        upload("GIF", b"GIF89a" + b"\x00" * 100, 415, "unsupported_format"),
        upload(
            "SVG",
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            415,
            "unsupported_format",
        ),
        upload("TIFF", b"II*\x00" + b"\x00" * 100, 415, "unsupported_format"),
        upload("HEIC", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 100, 415, "unsupported_format"),
        upload("truncated JPEG", small_jpeg[: len(small_jpeg) // 3], 400, "not_an_image"),
        upload("JPEG header only", b"\xff\xd8\xff\xe0" + b"\x00" * 64, 400, "not_an_image"),
        upload("stray byte JPEG 16000x16000", stray_byte_jpeg(16000, 16000), 413, "too_many_pixels"),
        upload("PNG declaring 100000x100000", png_declaring(100_000, 100_000), 413, "too_many_pixels"),
        upload("BMP declaring 50000x50000", bmp_declaring(50_000, 50_000), 413, "too_many_pixels"),
        upload("WebP declaring 16000x16000", webp_declaring(16_000, 16_000), 413, "too_many_pixels"),
        upload("PNG bomb 6000x6000", bomb_png, 413, "too_many_pixels"),
        upload("empty body", b"", 400, "missing_image"),
        upload("over the byte limit", b"\xff\xd8\xff" + b"\x00" * 300_000, 413, "too_large"),
        upload(
            "chunked over the limit",
            chunked([b"\xff\xd8\xff" + b"\x00" * 65_000] * 5),
            413,
            "too_large",
            **{"Transfer-Encoding": "chunked"},
        ),
        upload(
            "multipart junk part first",
            chunked([multipart([("junk", b"j" * 400_000), ("image", small_jpeg)])]),
            413,
            "too_large",
            **boundary,
            **{"Transfer-Encoding": "chunked"},
        ),
        upload(
            "multipart without image", multipart([("other", small_jpeg)]), 400, "missing_image", **boundary
        ),
        upload(
            "multipart part header without colon", b"--XyZ\r\nfoo\r\n\r\n", 400, "bad_request", **boundary
        ),
        upload(
            "nested multipart",
            b"--XyZ\r\nContent-Type: multipart/mixed; boundary=in\r\n"
            b'Content-Disposition: form-data; name="image"\r\n\r\n'
            b"--in\r\n\r\nx\r\n--in--\r\n--XyZ--\r\n",
            400,
            "missing_image",
            **boundary,
        ),
        upload(
            "multipart without boundary",
            multipart([("image", small_jpeg)]),
            400,
            None,
            ctype="multipart/form-data",
        ),
        upload(
            "face index abc",
            multipart([("image", small_jpeg), ("face", b"abc")]),
            400,
            "bad_face_index",
            **boundary,
        ),
        upload(
            "source name ../x",
            multipart([("image", small_jpeg), ("name", b"../x")]),
            400,
            "bad_source_name",
            **boundary,
        ),
        upload("bogus gzip upload", small_jpeg, 400, "bad_request", **{"Content-Encoding": "gzip"}),
        req(
            "upload, unknown session",
            "POST",
            "/api/source",
            404,
            "unknown_session",
            headers={"X-Session-Id": "x"},
            body=small_jpeg,
        ),
        req("upload, no session", "POST", "/api/source", 404, "unknown_session", body=small_jpeg),
        # --- paths and methods ------------------------------------------------------------------
        req("NUL in a static path", "GET", "/index.html%00.txt", 404, "not_found"),
        req("8000-character path", "GET", "/" + "a" * 8000, 404, "not_found"),
        req("dot-dot encoded", "GET", "/%2e%2e/pyproject.toml", 404, "not_found"),
        req("dot-dot slash encoded", "GET", "/..%2f..%2fetc/passwd", 404, "not_found"),
        req("double slash", "GET", "//etc/passwd", 404, "not_found"),
        req("backslashes", "GET", "/..\\..\\etc\\passwd", 404, "not_found"),
        req("invalid UTF-8 path", "GET", "/%ff%fe", 404, "not_found"),
        req("deep path", "GET", "/" + "a/" * 3000 + "x", 404, "not_found"),
        req("unknown API path", "GET", "/api/nothing", 404, "not_found"),
        req("PUT /api/session", "PUT", "/api/session", 405, "method_not_allowed"),
        req("GET /api/offer", "GET", "/api/offer", 405, "method_not_allowed"),
        req("TRACE /", "TRACE", "/", 405, "method_not_allowed"),
        # --- the HTTP parser --------------------------------------------------------------------
        req("9000-byte header", "GET", "/api/info", 400, "headers_too_large", headers={"X-Big": "a" * 9000}),
        raw(
            "9000-byte request line",
            b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "headers_too_large",
        ),
        raw("invalid method", b"G@T /api/info HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_method"),
        req(
            "Content-Length and Transfer-Encoding",
            "POST",
            "/api/session",
            400,
            "bad_request",
            headers={"Content-Length": "5", "Transfer-Encoding": "chunked"},
            body=b"0\r\n\r\n",
        ),
        raw(
            "TLS on the HTTP port",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
            {400, CLOSED},
        ),
        raw("HTTP/9.9", b"GET /api/info HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
        req(
            "negative Content-Length",
            "POST",
            "/api/offer",
            400,
            "bad_request",
            headers={"Content-Length": "-5"},
        ),
        req(
            "Content-Length abc", "POST", "/api/offer", 400, "bad_request", headers={"Content-Length": "abc"}
        ),
        raw(
            "two Content-Lengths",
            b"POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            400,
            "bad_request",
        ),
        req("NUL in a header", "GET", "/api/info", 400, "bad_request", headers={"X-Nul": "a\x00b"}),
        raw(
            "header without a colon",
            b"GET /api/info HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
            400,
            "bad_request",
        ),
        raw(
            "obsolete line folding",
            b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
            400,
            "bad_request",
        ),
        req(
            "unknown Transfer-Encoding",
            "POST",
            "/api/offer",
            {400, 501},
            None,
            headers={"Transfer-Encoding": "gzip, chunked"},
            body=b"0\r\n\r\n",
        ),
        # --- access -----------------------------------------------------------------------------
        req(
            "cross-origin session",
            "POST",
            "/api/session",
            403,
            "bad_origin",
            headers={"Origin": "http://evil.example"},
        ),
        req(
            "null origin delete",
            "DELETE",
            "/api/session",
            403,
            "bad_origin",
            headers={"Origin": "null", "X-Session-Id": live},
        ),
        req(
            "cross-origin delete of the live session",
            "DELETE",
            "/api/session",
            403,
            "bad_origin",
            headers={"Origin": "https://evil.example", "X-Session-Id": live},
        ),
        req(
            "cross-origin source removal",
            "DELETE",
            "/api/source",
            403,
            "bad_origin",
            headers={"Origin": "http://x.evil", "X-Session-Id": live},
        ),
        req(
            "lookalike origin",
            "POST",
            "/api/offer",
            403,
            "bad_origin",
            headers={"Origin": "http://127.0.0.1.evil.example"},
            body=b"{}",
        ),
        req("no token", "POST", "/api/session", 401, "unauthorized", auth={}),
        req("wrong token", "GET", "/api/info", 401, "unauthorized", auth={"Authorization": "Bearer nope"}),
        req(
            "token prefix",
            "GET",
            "/api/info",
            401,
            "unauthorized",
            auth={"Authorization": f"Bearer {TOKEN[:-1]}"},
        ),
        req(
            "token with a suffix",
            "GET",
            "/api/info",
            401,
            "unauthorized",
            auth={"X-Swaprtc-Token": TOKEN + "x"},
        ),
        req("token in the query", "GET", f"/api/info?token={TOKEN}", 401, "unauthorized", auth={}),
        req("Basic auth", "GET", "/api/info", 401, "unauthorized", auth={"Authorization": f"Basic {TOKEN}"}),
        req("empty Bearer", "DELETE", "/api/session", 401, "unauthorized", auth={"Authorization": "Bearer "}),
        req(
            "no token, live session",
            "DELETE",
            "/api/session",
            401,
            "unauthorized",
            auth={},
            headers={"X-Session-Id": live},
        ),
        # --- slow and broken clients -------------------------------------------------------------
        Case("slowloris request head", slowloris, {CLOSED}),
        Case("body stops halfway", slow_body, {408}, "request_timeout"),
        Case("hang up mid-upload", lambda base: hang_up_mid_upload(base, sid), {CLOSED}),
    ]
    return cases


async def test_hostile_corpus_gets_4xx_json_while_a_live_session_streams(
    astronaut_bgr: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    sdp = "\r\n".join(await real_offer_lines())
    app = create_app(Settings(**LIMITS), PaintEngine(FixedFaceDetector()))
    async with serve_in_process(app) as base, SwapClient(base, headers=AUTH) as live:
        await live.create_session()
        ok, _ = await live.upload_source(cv2.imencode(".jpg", astronaut_bgr)[1].tobytes(), "image/jpeg")
        assert ok == 200
        await live.connect(SyntheticCamera(astronaut_bgr, 15))
        async with live.http.post(f"{base}/api/session") as resp:
            sid = (await resp.json())["session_id"]
        assert live.session_id is not None
        cases = build_corpus(sid, live.session_id, sdp)
        assert len(cases) >= 60

        gate = asyncio.Semaphore(6)

        async def run(case: Case) -> tuple[Case, RawResponse | BaseException | None]:
            async with gate:
                try:
                    return case, await asyncio.wait_for(case.send(base), 15)
                except Exception as exc:  # reported below with the case's name
                    return case, exc

        # The control channel too: a deeply nested message gets an error reply, not a crash of the
        # channel's receive path.
        live._channel.send("[" * 60_000)
        frames_before = len(live.received)
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            results = await asyncio.gather(*(run(c) for c in cases))
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        frames_during = [r for r in live.received[frames_before:] if r.at <= started + elapsed]
        recent = [r for r in live.received if r.at > time.monotonic() - 1.5]

        problems = []
        for case, answer in results:
            if isinstance(answer, BaseException):
                problems.append(f"{case.name}: {answer!r}")
            elif answer is None:
                if CLOSED not in case.want:
                    problems.append(f"{case.name}: closed without an answer")
            else:
                error = None
                if answer.headers.get("content-type", "").startswith("application/json"):
                    error = answer.json().get("error", {})
                if answer.status not in case.want or error is None or not error.get("message"):
                    problems.append(f"{case.name}: {answer.status} {answer.body[:200]!r}")
                elif case.code is not None and error.get("code") != case.code:
                    problems.append(f"{case.name}: code {error.get('code')!r}, expected {case.code!r}")
        assert problems == [], "\n".join(problems)
        assert all(not (isinstance(a, RawResponse) and a.status >= 500) for _, a in results)

        assert any(m.get("type") == "error" and m.get("code") == "bad_json" for m in live.messages)
        # The live session never noticed: frames kept arriving during the corpus and after it.
        assert app[SESSIONS].get(live.session_id).connected
        assert len(frames_during) >= max(3, elapsed), (len(frames_during), elapsed)
        assert recent, "the live session stopped receiving frames"
        assert elapsed < 30, elapsed
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert tracebacks == []
