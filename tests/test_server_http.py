"""The HTTP API through a real socket: bad offers and uploads get 4xx JSON with stable codes,
sessions are independent, unexpected failures are a bare JSON 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import cv2
import numpy as np
import pytest
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.rtc.app import SESSIONS, create_app
from swaprtc.rtc.control import handle_message
from swaprtc.rtc.ice import BadIceServerError, parse_ice_server
from swaprtc.rtc.sdp import add_bitrate_hints
from swaprtc.settings import Settings
from swaprtc.types import SwapOptions

from tests.engine_doubles import PaintEngine
from tests.http_support import UNLIMITED, jpg, real_offer_lines
from tests.rtc_client import serve_in_process

if TYPE_CHECKING:
    from pathlib import Path

    import onnxruntime as ort


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def engine(retinaface_session: ort.InferenceSession) -> PaintEngine:
    return PaintEngine(RetinaFaceDetector(retinaface_session))


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession, app: Any) -> None:
        self.base, self.http, self.app = base, http, app

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def session(self) -> str:
        status, body = await self.call("POST", "/api/session")
        assert status == 201
        return body["session_id"]

    async def upload(self, sid: str, data: bytes, ctype: str = "image/png") -> tuple[int, Any]:
        return await self.call(
            "POST", "/api/source", data=data, headers={"X-Session-Id": sid, "Content-Type": ctype}
        )


@pytest.fixture
async def api(engine: PaintEngine) -> AsyncIterator[Api]:
    app = create_app(
        Settings(
            max_upload_bytes=300_000,
            max_upload_pixels=4_000_000,
            max_sessions=3,
            max_pending_per_client=3,
            **UNLIMITED,
        ),
        engine,
    )
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        yield Api(base, http, app)


def assert_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_bad_offers_get_400_json(api: Api) -> None:
    status, body = await api.call("POST", "/api/offer", data=b"{not json")
    assert_error(status, body, 400, "bad_json")
    status, body = await api.call("POST", "/api/offer", json=["sdp"])
    assert_error(status, body, 400, "bad_json")
    status, body = await api.call("POST", "/api/offer", json={"type": "offer"})
    assert_error(status, body, 400, "bad_offer")
    status, body = await api.call("POST", "/api/offer", json={"sdp": "v=0", "type": "answer"})
    assert_error(status, body, 400, "bad_offer")
    status, body = await api.call("POST", "/api/offer", json={"sdp": "garbage\r\nnot sdp", "type": "offer"})
    assert_error(status, body, 400, "bad_offer")
    audio_only = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        "c=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    status, body = await api.call("POST", "/api/offer", json={"sdp": audio_only, "type": "offer"})
    assert_error(status, body, 400, "bad_offer")
    status, body = await api.call(
        "POST", "/api/offer", json={"sdp": audio_only, "type": "offer", "session_id": "nope"}
    )
    assert_error(status, body, 404, "unknown_session")
    # A body that claims gzip but is not: aiohttp fails while reading it.
    status, body = await api.call(
        "POST",
        "/api/offer",
        data=b'{"sdp": "v=0", "type": "offer"}',
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_error(status, body, 400, "bad_request")
    # Rejected offers leave no session behind.
    assert (await api.call("GET", "/api/health")) == (200, {"ok": True, "sessions": 0})


async def test_bad_uploads_get_4xx_json(api: Api, astronaut_bgr: np.ndarray) -> None:
    sid = await api.session()
    status, body = await api.upload(sid, b"\x00\x01 certainly not an image" * 10)
    assert_error(status, body, 400, "not_an_image")
    status, body = await api.upload(sid, b"GIF89a" + b"\x00" * 100, "image/gif")
    assert_error(status, body, 415, "unsupported_format")
    assert "JPEG" in body["error"]["message"] and "GIF" in body["error"]["message"]
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'
    status, body = await api.upload(sid, svg, "image/svg+xml")
    assert_error(status, body, 415, "unsupported_format")
    status, body = await api.upload(sid, b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg")
    assert_error(status, body, 400, "not_an_image")  # a JPEG header with nothing behind it
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    status, body = await api.upload(sid, png(noise))  # ~480 kB > 300 kB limit
    assert_error(status, body, 413, "too_large")
    status, body = await api.upload(sid, png(np.zeros((2100, 2100, 3), np.uint8)))  # tiny file, 4.4 MP
    assert_error(status, body, 413, "too_many_pixels")
    gradient = np.zeros((300, 400, 3), np.uint8)
    gradient[:] = np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None]
    status, body = await api.upload(sid, png(gradient))
    assert_error(status, body, 422, "no_face")
    status, body = await api.upload(sid, b"")
    assert_error(status, body, 400, "missing_image")
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.png", content_type="image/png")
    status, body = await api.call("POST", "/api/source", data=form, headers={"X-Session-Id": sid})
    assert_error(status, body, 400, "missing_image")
    # A multipart part whose header line has no colon.
    status, body = await api.upload(sid, b"--b\r\nfoo\r\n\r\n", "multipart/form-data; boundary=b")
    assert_error(status, body, 400, "bad_request")
    for ctype in ("image/png", "multipart/form-data; boundary=b"):
        status, body = await api.call(
            "POST",
            "/api/source",
            data=jpg(astronaut_bgr),  # not gzip
            headers={"X-Session-Id": sid, "Content-Type": ctype, "Content-Encoding": "gzip"},
        )
        assert_error(status, body, 400, "bad_request")
    status, body = await api.upload("unknown", png(astronaut_bgr))
    assert_error(status, body, 404, "unknown_session")
    status, body = await api.call("POST", "/api/source", data=png(astronaut_bgr))
    assert_error(status, body, 404, "unknown_session")
    # None of the failures set a source.
    assert api.app[SESSIONS].get(sid).control.source is None


async def test_upload_raw_and_multipart_and_several_faces(
    api: Api, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    sid = await api.session()
    status, body = await api.upload(sid, jpg(astronaut_bgr), "image/jpeg")
    assert status == 200, body
    assert body["faces_found"] == 1 and body["warning"] is None
    assert body["image_size"] == [512, 512]
    x1, y1, x2, y2 = body["box"]
    assert 160 < x1 < 200 and 40 < y1 < 80 and 250 < x2 < 290 and 160 < y2 < 200
    assert body["thumbnail"].startswith("data:image/jpeg;base64,")

    small = cv2.resize(grace_bgr, (grace_bgr.shape[1] * 300 // grace_bgr.shape[0], 300))
    group = np.zeros((512, 512 + small.shape[1], 3), np.uint8)
    group[:, :512] = astronaut_bgr
    group[:300, 512:] = small
    form = aiohttp.FormData()
    form.add_field("image", jpg(group), filename="group.jpg", content_type="image/jpeg")
    status, body = await api.call("POST", f"/api/source?session={sid}", data=form)
    assert status == 200, body
    assert body["faces_found"] == 2 and body["warning"] == "several_faces"
    faces = api.app[SESSIONS].get(sid).control.source.face
    assert body["box"] == [round(float(v), 1) for v in faces.bbox]
    assert (await api.call("DELETE", "/api/source", headers={"X-Session-Id": sid})) == (200, {"ok": True})
    assert api.app[SESSIONS].get(sid).control.source is None


async def test_sessions_are_independent_and_limited(
    api: Api, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    a, b = await api.session(), await api.session()
    assert a != b
    assert (await api.upload(a, jpg(astronaut_bgr), "image/jpeg"))[0] == 200
    assert (await api.upload(b, jpg(grace_bgr), "image/jpeg"))[0] == 200
    manager = api.app[SESSIONS]
    box_a, box_b = manager.get(a).control.source.face.bbox, manager.get(b).control.source.face.bbox
    assert not np.allclose(box_a, box_b)
    await api.call("DELETE", "/api/source", headers={"X-Session-Id": a})
    assert manager.get(a).control.source is None and manager.get(b).control.source is not None
    await api.session()
    status, body = await api.call("POST", "/api/session")  # a 4th unconnected session of one client
    assert_error(status, body, 429, "too_many_sessions")
    assert (await api.call("DELETE", "/api/session", headers={"X-Session-Id": a})) == (200, {"ok": True})
    status, body = await api.upload(a, png(astronaut_bgr))
    assert_error(status, body, 404, "unknown_session")
    # DELETE is idempotent: the page's Stop after the server already ended the session is quiet.
    status, body = await api.call("DELETE", "/api/session", headers={"X-Session-Id": a})
    assert (status, body) == (200, {"ok": True, "gone": True})
    assert_error(*await api.call("DELETE", "/api/session"), 404, "unknown_session")  # no id at all


async def test_never_connected_sessions_expire(api: Api, astronaut_bgr: np.ndarray) -> None:
    bare, with_source = await api.session(), await api.session()
    assert (await api.upload(with_source, jpg(astronaut_bgr), "image/jpeg"))[0] == 200
    manager = api.app[SESSIONS]
    created = manager.get(with_source).created_at
    assert manager.unused_s < manager.never_connected_s
    assert await manager.sweep(now=created + 1.0) == []
    # No source and no connection: gone soon. A source but never connected: kept much longer.
    assert await manager.sweep(now=created + manager.unused_s + 1.0) == [bare]
    assert await manager.sweep(now=created + manager.never_connected_s - 1.0) == []
    assert await manager.sweep(now=created + manager.never_connected_s + 1.0) == [with_source]
    assert (await api.call("GET", "/api/health"))[1]["sessions"] == 0


async def test_unused_sessions_free_their_slot_soon(engine: PaintEngine, astronaut_bgr: np.ndarray) -> None:
    """Sessions without a source or a connection are retired soon (a short injected lifetime
    here), and the page's next upload gets unknown_session (it then creates a new session)."""
    app = create_app(Settings(max_sessions=2, max_pending_per_client=2, **UNLIMITED), engine, unused_s=3.0)
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        bare, kept = await api.session(), await api.session()
        assert_error(*await api.call("POST", "/api/session"), 429, "too_many_sessions")
        assert (await api.upload(kept, jpg(astronaut_bgr), "image/jpeg"))[0] == 200
        for _ in range(80):  # the janitor runs once a second
            if (await api.call("GET", "/api/health"))[1]["sessions"] < 2:
                break
            await asyncio.sleep(0.1)
        assert set(app[SESSIONS].sessions) == {kept}
        assert_error(*await api.upload(bare, jpg(astronaut_bgr), "image/jpeg"), 404, "unknown_session")
        assert (await api.call("POST", "/api/session"))[0] == 201


async def test_info_health_and_static(api: Api) -> None:
    status, body = await api.call("GET", "/api/info")
    assert status == 200
    assert body["engine"]["engine"] == "paint" and body["codec"] == "vp8" and body["ice_servers"] == []
    async with api.http.get(api.base + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
    async with api.http.get(api.base + "/%2e%2e/pyproject.toml") as resp:
        assert resp.status == 404
    status, body = await api.call("GET", "/api/nothing-here")
    assert_error(status, body, 404, "not_found")


class BrokenEngine(PaintEngine):
    def prepare_source(self, image: np.ndarray) -> Any:
        raise RuntimeError("secret internal detail")


async def test_unexpected_errors_are_a_json_500_without_details(
    engine: PaintEngine, astronaut_bgr: np.ndarray
) -> None:
    app = create_app(Settings(), BrokenEngine(engine.detector))
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        status, body = await api.upload(await api.session(), png(astronaut_bgr))
    assert_error(status, body, 500, "internal")
    assert "secret" not in str(body) and "Traceback" not in str(body)


async def test_ice_servers_are_configurable_and_given_to_the_browser(engine: PaintEngine) -> None:
    app = create_app(
        Settings(ice_servers=("stun:stun.example.org:3478", "turn:u:p@turn.example.org:3478")), engine
    )
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        status, body = await Api(base, http, app).call("GET", "/api/info")
    assert status == 200
    assert body["ice_servers"] == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"},
    ]


def test_ice_server_parsing() -> None:
    turn = parse_ice_server("turns:alice:s3cr:et@relay.example.org:5349?transport=tcp")
    assert (turn.url, turn.username, turn.credential) == (
        "turns:relay.example.org:5349?transport=tcp",
        "alice",
        "s3cr:et",
    )
    for bad in ("http://x", "stun:", "turn:host:3478", "stun:user:pw@host:1", "udp:host:1"):
        with pytest.raises(BadIceServerError):
            parse_ice_server(bad)


def test_bitrate_hints_are_added_to_video_fmtp() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
            "a=rtpmap:0 PCMU/8000",
            "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99",
            "a=rtpmap:97 VP8/90000",
            "a=rtpmap:98 rtx/90000",
            "a=fmtp:98 apt=97",
            "a=rtpmap:99 H264/90000",
            "a=fmtp:99 packetization-mode=1",
            "",
        ]
    )
    out = add_bitrate_hints(sdp, 500_000, 1_500_000, 4_000_000)
    hint = "x-google-min-bitrate=500;x-google-start-bitrate=1500;x-google-max-bitrate=4000"
    lines = out.split("\r\n")
    assert lines[lines.index("a=rtpmap:97 VP8/90000") + 1] == f"a=fmtp:97 {hint}"
    assert f"a=fmtp:99 packetization-mode=1;{hint}" in lines
    assert "a=fmtp:98 apt=97" in lines  # rtx untouched
    assert out.count("x-google-max-bitrate") == 2


def test_control_messages() -> None:
    options = SwapOptions()
    result = handle_message('{"type": "ping", "t": 12.5}', options, False)
    assert result.replies == ({"type": "pong", "t": 12.5},)
    result = handle_message(
        '{"type": "settings", "many_faces": true, "strength": 0.4, "show_stats": true}', options, False
    )
    assert result.options.many_faces and result.options.strength == 0.4 and result.show_stats
    assert result.replies == ()
    for bad in (
        "not json",
        "[1]",
        '{"type": "dance"}',
        '{"type": "settings", "strength": 3}',
        '{"type": "settings", "enhance": "yes"}',
        b"\xff\xfe",
    ):
        replies = handle_message(bad, options, False).replies
        assert len(replies) == 1 and replies[0]["type"] == "error", bad
    mixed = handle_message('{"type": "settings", "strength": "x", "enhance": true}', options, False)
    assert mixed.options.enhance and mixed.options.strength == 1.0
    assert mixed.replies[0]["code"] == "bad_settings"
    # The embedded engine's keys: how far to move towards the source's shape, and the mouth mask.
    shaped = handle_message('{"type": "settings", "shape": 0.25, "mouth_mask": true}', options, False)
    assert shaped.options.shape == 0.25 and shaped.options.mouth_mask and shaped.replies == ()
    for bad in ('{"type": "settings", "shape": 1.5}', '{"type": "settings", "shape": "far"}'):
        result = handle_message(bad, options, False)
        assert result.replies[0]["code"] == "bad_settings" and result.options.shape == options.shape


async def test_control_channel_silence_and_bitrate_policy(api: Api) -> None:
    from aiortc.codecs import h264, vpx

    settings = api.app[SESSIONS].settings
    # The encoder limits are per sender (rtc/encoders.py): aiortc's module constants stay as shipped.
    assert (vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE) == (250_000, 500_000, 1_500_000)
    assert (h264.MIN_BITRATE, h264.MAX_BITRATE) == (500_000, 3_000_000)
    assert settings.max_bitrate == 4_000_000
    session = api.app[SESSIONS].get(await api.session())
    session.connected = True
    session.channel = object()  # type: ignore[assignment]  # a control channel was opened
    session.last_message_at = 100.0
    idle = settings.session_idle_s
    assert session.expired(100.0 + idle - 1, idle, 1e9) is None
    assert session.expired(100.0 + idle + 1, idle, 1e9) == "idle"
    session.channel = None
    await api.app[SESSIONS].remove(session.id, "client")


def self_signed(tmp_path: Any) -> tuple[Any, Any]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_from_settings(engine: PaintEngine, tmp_path: Path) -> None:
    from swaprtc.errors import SwapRTCError
    from swaprtc.rtc.tls import tls_context

    cert, key = self_signed(tmp_path)
    with pytest.raises(SwapRTCError, match="both"):
        tls_context(Settings(tls_cert=cert))
    settings = Settings(tls_cert=cert, tls_key=key)
    context = tls_context(settings)
    assert context is not None
    async with (
        serve_in_process(create_app(settings, engine), ssl_context=context) as base,
        aiohttp.ClientSession() as http,
        http.get(base + "/api/health", ssl=False) as resp,
    ):
        assert base.startswith("https://")
        assert resp.status == 200 and (await resp.json())["ok"] is True


async def test_tls_self_signed_serves_https_for_localhost(engine: PaintEngine) -> None:
    import asyncio
    import ssl
    from pathlib import Path
    from urllib.parse import urlsplit

    from cryptography import x509
    from swaprtc.rtc.tls import tls_context

    settings = Settings(tls_self_signed=True)
    context = tls_context(settings)
    assert context is not None
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    async with serve_in_process(create_app(settings, engine), ssl_context=context) as base:
        async with aiohttp.ClientSession() as http, http.get(base + "/api/health", ssl=client) as resp:
            assert resp.status == 200
        url = urlsplit(base)
        _, writer = await asyncio.open_connection(url.hostname, url.port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    with pytest.raises(Exception, match="not both"):
        Settings(tls_self_signed=True, tls_cert=Path("c.pem"), tls_key=Path("k.pem"))


async def test_damaged_offers_never_get_a_500(engine: PaintEngine) -> None:
    """Every one-line deletion and a set of truncated lines of a real offer: 200 or 400 JSON."""
    lines = await real_offer_lines()
    variants = ["\r\n".join(lines[:i] + lines[i + 1 :]) for i in range(len(lines))]
    rng = np.random.default_rng(0)
    for _ in range(30):
        damaged = list(lines)
        j = int(rng.integers(len(damaged)))
        cut = int(rng.integers(len(damaged[j]) + 1))
        damaged[j] = damaged[j][:cut] + str(rng.choice(["", "x", ":", " 999", "=", "\x00"]))
        variants.append("\r\n".join(damaged))
    app = create_app(
        Settings(
            max_sessions=len(variants) + 1,
            max_pending_sessions=len(variants) + 1,
            max_pending_per_client=len(variants) + 1,
            **UNLIMITED,
        ),
        engine,
    )
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        for sdp in variants:
            status, body = await api.call("POST", "/api/offer", json={"sdp": sdp, "type": "offer"})
            assert status in (200, 400), (status, body, sdp)
            if status == 400:
                assert body["error"]["code"] == "bad_offer"
        await app[SESSIONS].close_all()


async def test_an_offer_after_a_rejected_one_gets_its_own_processor(engine: PaintEngine) -> None:
    """An offer rejected after its track was created, then a good one on the same session: the
    new track must not share the old track's processor (not thread-safe; its job may still run)."""
    lines = await real_offer_lines()
    without_mid = "\r\n".join(line for line in lines if line != "a=mid:0")
    app = create_app(Settings(), engine)
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        sid = await api.session()
        session = app[SESSIONS].get(sid)
        opened = len(engine.processors)
        status, body = await api.call(
            "POST", "/api/offer", json={"sdp": without_mid, "type": "offer", "session_id": sid}
        )
        assert_error(status, body, 400, "bad_offer")
        assert len(engine.processors) == opened + 1  # the rejected offer had a track
        first = engine.processors[-1]
        assert session.track is None and session.pc is None
        status, body = await api.call(
            "POST", "/api/offer", json={"sdp": "\r\n".join(lines), "type": "offer", "session_id": sid}
        )
        assert status == 200, body
        assert len(engine.processors) == opened + 2
        assert session.processor is engine.processors[-1] and session.processor is not first
        await app[SESSIONS].close_all()
