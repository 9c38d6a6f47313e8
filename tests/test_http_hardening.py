"""Hostile input and abuse through real sockets: every limit answers a 4xx JSON error with a
stable code (or closes the connection where HTTP cannot answer), never a 500."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image
from swaprtc.http.body import json_depth, parse_json
from swaprtc.rtc.app import SESSIONS
from swaprtc.rtc.control import handle_message
from swaprtc.rtc.upload import decode_image
from swaprtc.settings import Settings
from swaprtc.types import Face, SourceFace, SwapOptions

from tests.engine_doubles import FixedFaceDetector, PaintEngine
from tests.http_support import UNLIMITED, assert_error, jpg, served, stray_byte_jpeg
from tests.raw_http import host_port, request_bytes, send_raw
from tests.rtc_client import SwapClient, SyntheticCamera


# --- bad input -----------------------------------------------------------------------------------
async def test_deeply_nested_json_is_a_400() -> None:
    """``[`` × 100,000 used to escape as a RecursionError 500. Over the JSON byte cap it is 413;
    under a raised cap, nesting deeper than any offer needs is 400 bad_json."""
    async with served(Settings(**UNLIMITED)) as api:
        status, answer, _ = await api.call("POST", "/api/offer", data=b"[" * 100_000)
        assert_error(status, answer, 413, "too_large")
        status, answer, _ = await api.call("POST", "/api/offer", data=b'{"a":' * 5_000)
        assert_error(status, answer, 400, "bad_json")
    settings = Settings(max_json_bytes=1_000_000, max_sdp_bytes=500_000, **UNLIMITED)
    async with served(settings) as api:
        status, answer, _ = await api.call("POST", "/api/offer", data=b"[" * 100_000)
        assert_error(status, answer, 400, "bad_json")


def test_json_depth_scan_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": "[[[[\\"[[", "b": [1, {"c": []}]}') == 4
    assert json_depth(b'"unterminated [[[') == 0
    with pytest.raises(Exception, match="nested deeper"):
        parse_json(b"[" * 33 + b"]" * 33)
    assert parse_json(b"[" * 32 + b"]" * 32) is not None


def test_deeply_nested_control_messages_get_an_error_reply() -> None:
    for message in ("[" * 60_000, b"[" * 60_000, '{"a":' * 20_000):
        replies = handle_message(message, SwapOptions(), False).replies
        assert [r["code"] for r in replies] == ["bad_json"]


async def test_static_handler_never_fails_on_odd_names() -> None:
    async with served(Settings()) as api:
        for path in (
            "/index.html%00.txt",
            "/" + "a" * 8000,
            "/%00",
            "/" + "a/" * 2000 + "x",
            "/..%2f..%2fetc/passwd",
        ):
            answer = await send_raw(api.base, request_bytes("GET", path))
            assert answer is not None and answer.status == 404, (path[:40], answer)
            assert answer.json()["error"]["code"] == "not_found"
        ok = await send_raw(api.base, request_bytes("GET", "/index.html"))
        assert ok is not None and ok.status == 200


async def junk_then_image(image: bytes, junk_bytes: int) -> AsyncIterator[bytes]:
    boundary = "b0undary"
    yield f'--{boundary}\r\nContent-Disposition: form-data; name="junk"\r\n\r\n'.encode()
    chunk = b"j" * 65536
    for _ in range(junk_bytes // len(chunk)):
        yield chunk
    yield (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    yield image
    yield f"\r\n--{boundary}--\r\n".encode()


async def test_the_whole_multipart_body_is_capped(astronaut_bgr: np.ndarray) -> None:
    """A chunked body (no Content-Length) whose first part is junk under another name: the junk
    counts against the upload limit."""
    async with served(Settings(max_upload_bytes=300_000, **UNLIMITED)) as api:
        sid = await api.session()
        headers = {"X-Session-Id": sid, "Content-Type": "multipart/form-data; boundary=b0undary"}
        image = jpg(astronaut_bgr)
        status, body, _ = await api.call(
            "POST", "/api/source", data=junk_then_image(image, 4 * 1024 * 1024), headers=headers
        )
        assert_error(status, body, 413, "too_large")
        # The same shape with a little junk is fine.
        status, body, _ = await api.call(
            "POST", "/api/source", data=junk_then_image(image, 0), headers=headers
        )
        assert status == 200, body


def test_a_stray_byte_before_sof_does_not_hide_the_true_size() -> None:
    """The header declares 16000×16000: refused from the header, nothing decoded (no pixel
    buffer is ever allocated: a decode would take 768 MB)."""
    data = stray_byte_jpeg(16000, 16000)
    assert len(data) < 1000
    tracemalloc.start()
    try:
        with pytest.raises(Exception) as caught:
            decode_image(data, 40_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert getattr(caught.value, "code", None) == "too_many_pixels"
    assert peak < 5_000_000, peak
    # Just over a small limit, and just under it (decoded: the size read is the real one).
    with pytest.raises(Exception, match="pixels"):
        decode_image(stray_byte_jpeg(3000, 3000), 8_000_000)
    assert decode_image(stray_byte_jpeg(64, 48), 8_000_000).shape == (48, 64, 3)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "JPEG"])
def test_every_format_is_refused_by_its_header_size(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1000, 900), (10, 200, 30)).save(buf, fmt)
    data = buf.getvalue()
    with pytest.raises(Exception) as caught:
        decode_image(data, 899_999)
    assert getattr(caught.value, "code", None) == "too_many_pixels"
    image = decode_image(data, 900_000)
    assert image.shape == (900, 1000, 3)
    assert abs(int(image[450, 500, 1]) - 200) < 8 and abs(int(image[450, 500, 2]) - 10) < 8  # BGR


def test_uploads_are_turned_upright_by_their_exif_orientation() -> None:
    """A phone photo stored sideways with EXIF orientation 6 decodes upright (as cv2 did)."""
    wide = Image.new("RGB", (64, 32), (200, 30, 10))
    exif = wide.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buf = io.BytesIO()
    wide.save(buf, "JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue(), 10_000).shape == (64, 32, 3)
    plain = io.BytesIO()
    wide.save(plain, "JPEG")
    assert decode_image(plain.getvalue(), 10_000).shape == (32, 64, 3)


class RecordingEngine(PaintEngine):
    """Records which threads prepare sources and how many run at once."""

    def __init__(self) -> None:
        super().__init__(FixedFaceDetector())
        self.threads: set[str] = set()
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return super().prepare_source(image, face)
        finally:
            with self.lock:
                self.running -= 1


async def test_parallel_uploads_run_on_their_own_bounded_executor(astronaut_bgr: np.ndarray) -> None:
    """30 uploads at once from 30 addresses (named by a trusted proxy): they decode one at a
    time on the upload thread, the queue in front of it stays short (503 busy beyond it), and
    the live session keeps its frames."""
    engine = RecordingEngine()
    settings = Settings(upload_threads=1, max_queued_uploads=4, trusted_proxies=("127.0.0.1",), **UNLIMITED)
    async with served(settings, engine) as api, SwapClient(api.base) as live:
        await live.connect(SyntheticCamera(astronaut_bgr, 15))  # live video meanwhile
        sid = await api.session()
        image = jpg(astronaut_bgr)
        before, started = len(live.received), time.monotonic()
        results = await asyncio.gather(
            *(
                api.call(
                    "POST",
                    "/api/source",
                    data=image,
                    headers={
                        "X-Session-Id": sid,
                        "Content-Type": "image/jpeg",
                        "X-Forwarded-For": f"198.51.100.{i}",
                    },
                )
                for i in range(30)
            )
        )
        elapsed = time.monotonic() - started
        during = len(live.received) - before
    assert during >= max(2, elapsed), (during, elapsed)  # the stream went on during the burst
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 5
    busy = [(body, headers) for status, body, headers in results if status == 503]
    assert busy, "30 uploads at once must not all be queued"
    assert all(body["error"]["code"] == "busy" and int(headers["Retry-After"]) >= 1 for body, headers in busy)
    assert engine.most == 1
    assert engine.threads and all(name.startswith("swaprtc-upload") for name in engine.threads), (
        engine.threads
    )


async def test_slow_uploads_tie_up_only_their_own_clients_places(astronaut_bgr: np.ndarray) -> None:
    """Two uploads trickling in from one address: its third is refused (429 busy), while
    another address uploads as usual."""
    settings = Settings(max_uploads_per_client=2, trusted_proxies=("127.0.0.1",), **UNLIMITED)
    async with served(settings) as api:
        sid = await api.session()
        slow = []
        for _ in range(2):
            _reader, writer = await asyncio.open_connection(*host_port(api.base))
            head = request_bytes(
                "POST",
                "/api/source",
                headers={
                    "X-Session-Id": sid,
                    "Content-Type": "image/jpeg",
                    "Content-Length": "100000",
                    "X-Forwarded-For": "203.0.113.7",
                },
            )
            writer.write(head + b"\xff\xd8\xff")
            await writer.drain()
            slow.append(writer)
        await asyncio.sleep(0.3)
        image = jpg(astronaut_bgr)
        headers = {"X-Session-Id": sid, "Content-Type": "image/jpeg"}
        status, body, answer = await api.call(
            "POST", "/api/source", data=image, headers={**headers, "X-Forwarded-For": "203.0.113.7"}
        )
        assert_error(status, body, 429, "busy")
        assert int(answer["Retry-After"]) >= 1
        status, body, _ = await api.call(
            "POST", "/api/source", data=image, headers={**headers, "X-Forwarded-For": "203.0.113.8"}
        )
        assert status == 200, body
        for writer in slow:
            writer.transport.abort()


async def offer_sdp() -> str:
    from tests.http_support import real_offer_lines

    return "\r\n".join(await real_offer_lines())


def replace_attr(sdp: str, name: str, value: str) -> str:
    return "\r\n".join(
        f"a={name}:{value}" if line.startswith(f"a={name}:") else line for line in sdp.split("\r\n")
    )


async def test_sdp_size_fingerprint_and_ice_credentials_are_checked() -> None:
    sdp = await offer_sdp()
    async with served(Settings(max_json_bytes=64 * 1024, max_sdp_bytes=16 * 1024, **UNLIMITED)) as api:
        bad = {
            "fingerprint ZZ": replace_attr(sdp, "fingerprint", "sha-256 ZZ"),
            "fingerprint short": replace_attr(sdp, "fingerprint", "sha-256 AB:CD"),
            "fingerprint unknown hash": replace_attr(sdp, "fingerprint", "rot13 " + ":".join(["AB"] * 32)),
            "ufrag 5000": replace_attr(sdp, "ice-ufrag", "u" * 5000),
            "ufrag 3": replace_attr(sdp, "ice-ufrag", "abc"),
            "ufrag chars": replace_attr(sdp, "ice-ufrag", "ab c;d"),
            "pwd 21": replace_attr(sdp, "ice-pwd", "p" * 21),
            "pwd 257": replace_attr(sdp, "ice-pwd", "p" * 257),
            "sdp over its cap": sdp + "\r\n" + "a=x-pad:" + "y" * 20_000,
        }
        for name, variant in bad.items():
            status, body, _ = await api.call("POST", "/api/offer", json={"sdp": variant, "type": "offer"})
            assert_error(status, body, 400, "bad_offer")
            assert name and body
        status, body, _ = await api.call(
            "POST", "/api/offer", json={"sdp": "v=0" + " " * 70_000, "type": "offer"}
        )
        assert_error(status, body, 413, "too_large")
        assert (await api.call("GET", "/api/health"))[1]["sessions"] == 0
        # The untouched offer (and boundary lengths) are accepted.
        edge = replace_attr(replace_attr(sdp, "ice-ufrag", "a+/4"), "ice-pwd", "P" * 22)
        status, body, _ = await api.call("POST", "/api/offer", json={"sdp": edge, "type": "offer"})
        assert status == 200, body
        await api.app[SESSIONS].close_all()


# --- timeouts and broken clients -----------------------------------------------------------------
async def trickle(
    base: str, first: bytes, drip: bytes, every_s: float, give_up_s: float
) -> tuple[float, bytes]:
    """Send ``first``, then ``drip`` one byte per ``every_s``; returns (seconds until the server
    closed the connection, what it sent)."""
    reader, writer = await asyncio.open_connection(*host_port(base))
    start = time.monotonic()
    received = b""
    writer.write(first)
    try:
        for byte in drip:
            if time.monotonic() - start > give_up_s:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), every_s)
            except TimeoutError:
                continue
            received += chunk
            if not chunk:
                return time.monotonic() - start, received
        while time.monotonic() - start < give_up_s:
            chunk = await asyncio.wait_for(reader.read(65536), give_up_s)
            received += chunk
            if not chunk:
                return time.monotonic() - start, received
    except (ConnectionError, TimeoutError):
        return time.monotonic() - start, received
    finally:
        writer.close()
    return float("inf"), received


async def test_slowloris_heads_and_slow_bodies_are_cut_off() -> None:
    settings = Settings(header_timeout_s=1.0, body_timeout_s=1.0, keepalive_timeout_s=30, **UNLIMITED)
    async with served(settings) as api:
        # Headers at 5 bytes a second never finish: closed after the head timeout, no answer.
        closed_after, answer = await trickle(
            api.base, b"GET / HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200, every_s=0.2, give_up_s=8
        )
        assert closed_after < 6, closed_after
        assert answer == b""
        # A body at 5 bytes a second: 408 JSON, then closed.
        head = request_bytes("POST", "/api/offer", headers={"Content-Length": "500"})
        closed_after, answer = await trickle(api.base, head, b"{" * 500, every_s=0.2, give_up_s=8)
        assert closed_after < 6, closed_after
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b'"request_timeout"' in answer
        # A normal request still works, and an idle keep-alive connection is not cut by the
        # head timeout while idle.
        status, _, _ = await api.call("GET", "/api/health")
        assert status == 200


async def test_a_client_hanging_up_mid_upload_is_one_quiet_log_line(
    caplog: pytest.LogCaptureFixture, astronaut_bgr: np.ndarray
) -> None:
    async with served(Settings(**UNLIMITED)) as api:
        sid = await api.session()
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            for ctype in ("image/jpeg", "multipart/form-data; boundary=zz"):
                head = request_bytes(
                    "POST",
                    "/api/source",
                    headers={"X-Session-Id": sid, "Content-Type": ctype, "Content-Length": "1000000"},
                )
                _reader, writer = await asyncio.open_connection(*host_port(api.base))
                prefix = (
                    b'--zz\r\nContent-Disposition: form-data; name="image"\r\n\r\n'
                    if "multipart" in ctype
                    else b""
                )
                writer.write(head + prefix + b"\xff" * 100_000)
                await writer.drain()
                await asyncio.sleep(0.3)
                before = len(went_away(caplog))
                writer.transport.abort()
                deadline = time.monotonic() + 5
                while len(went_away(caplog)) == before and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # room for a second (duplicate) record to show up
                assert len(went_away(caplog)) == before + 1, [r.getMessage() for r in caplog.records]
            status, _, _ = await api.call("GET", "/api/health")
            assert status == 200
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not noisy, [(r.name, r.getMessage()) for r in noisy]
    assert all(r.levelno <= logging.DEBUG for r in went_away(caplog))


def went_away(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "went away" in r.getMessage()]


async def test_http_parser_errors_are_json(caplog: pytest.LogCaptureFixture) -> None:
    async with served(Settings()) as api:
        cases = {
            "header too long": request_bytes("GET", "/api/info", headers={"X-Big": "a" * 9000}),
            "bad method": b"G@T /api/info HTTP/1.1\r\nHost: x\r\n\r\n",
            "CL and TE": request_bytes(
                "POST",
                "/api/session",
                headers={"Content-Length": "5", "Transfer-Encoding": "chunked"},
                body=b"0\r\n\r\n",
            ),
            "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
            "bad version": b"GET /api/info HTTP/9.9\r\nHost: x\r\n\r\n",
            "request line too long": b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        with caplog.at_level(logging.DEBUG):
            for name, raw in cases.items():
                answer = await send_raw(api.base, raw)
                assert answer is not None, name
                assert 400 <= answer.status < 500, (name, answer)
                assert answer.headers["content-type"].startswith("application/json"), (name, answer)
                assert answer.json()["error"]["code"] in ("bad_request", "bad_method", "headers_too_large"), (
                    name
                )
                assert answer.headers["server"] == "swaprtc"
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
