"""Real browser end to end: Debian's Chromium with a fake camera playing a real face, against a real
server process. The page uploads a source face through its real file input, connects, and the
swapped <video> must show a changed face region over an unchanged background.

Runs under ``CI=true`` always (a missing Chromium is then a failure); elsewhere it skips only when
/usr/bin/chromium is missing. ``SWAPRTC_BROWSER_TEST_URL`` points it at an already running server
instead of starting one (e.g. a GPU box running the neural engine).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.y4m import fit_frame, write_y4m

if TYPE_CHECKING:
    import onnxruntime as ort
    from playwright.sync_api import Browser, Page
    from swaprtc.models.store import ModelStore

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path(os.environ.get("SWAPRTC_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

pytestmark = pytest.mark.skipif(
    not IN_CI and not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (set CI=true to require it)"
)

SERVER_START_S = 30.0
PLAY_TIMEOUT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def camera_frame(astronaut_bgr: np.ndarray) -> np.ndarray:
    return fit_frame(astronaut_bgr, 640, 480)


@pytest.fixture(scope="module")
def camera_face_box(
    camera_frame: np.ndarray, retinaface_session: ort.InferenceSession
) -> tuple[int, int, int, int]:
    """Eyes-to-mouth box of the face in the fake camera picture, found by the real detector.

    The inner features, not the detector's whole box: that one includes hair and forehead, which a
    swap (rightly) leaves mostly alone.
    """
    from swaprtc.pipeline.detector import RetinaFaceDetector

    faces = RetinaFaceDetector(retinaface_session).detect(camera_frame)
    assert len(faces) == 1, "the fake camera picture must show exactly one face"
    kps = faces[0].kps
    (x1, y1), (x2, y2) = kps.min(axis=0), kps.max(axis=0)
    mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    return round(x1 - mx), round(y1 - my), round(x2 + mx), round(y2 + my)


@pytest.fixture(scope="module")
def fake_camera(camera_frame: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m", [camera_frame] * 5)


@contextlib.contextmanager
def _running_server(model_store: ModelStore, log_dir: Path, **env_extra: str) -> Iterator[str]:
    """A real ``swaprtc serve`` process on a free loopback port; yields its base URL."""
    for name in ("retinaface_mnet025", "face_landmark"):
        model_store.ensure(name)  # Fetch once into the test cache; the server then finds them there.
    port = _free_port()
    env = {
        **os.environ,
        "SWAPRTC_MODELS_DIR": str(model_store.models_dir),
        "SWAPRTC_ENGINE": "embedded",
        "SWAPRTC_ICE_LOOPBACK": "true",  # CI containers may have no other interface.
        "SWAPRTC_LOG_LEVEL": "info",
        **env_extra,
    }
    log_path = log_dir / "swaprtc.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swaprtc", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError, ValueError):
                if _get_json(f"{url}/healthz").get("ok"):  # open even with --token
                    break
            if time.monotonic() > deadline:
                tail = log_path.read_text()[-3000:]
                pytest.fail(f"server did not answer /healthz in {SERVER_START_S} s:\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("SWAPRTC_TEST_SHOW_SERVER_LOG"):
            print(log_path.read_text()[-5000:])


@pytest.fixture(scope="module")
def server_url(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("SWAPRTC_BROWSER_TEST_URL")
    if given:
        yield given.rstrip("/")
        return
    with _running_server(model_store, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(fake_camera: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is required under CI=true (install the Debian chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={fake_camera}",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield b
        finally:
            b.close()


# Contexts bypass the page's CSP: Playwright polls wait_for_function predicates through eval,
# which the CSP forbids. tests/test_browser_token.py runs the page under its CSP.
@pytest.fixture
def page(browser: Browser, server_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.goto(server_url + "/")
    pg.console_log = console  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


# Draws both videos at the camera's size and returns them as PNG data URLs, read from the page's
# own <video> elements, so the test sees exactly what the user sees.
GRAB_JS = """
([w, h]) => {
  const grab = (id) => {
    const v = document.getElementById(id);
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    c.getContext('2d').drawImage(v, 0, 0, w, h);
    return c.toDataURL('image/png');
  };
  return { local: grab('local-video'), remote: grab('remote-video') };
}
"""

# Resolves once the element has real frames and its playback clock moves.
PLAYING_JS = """
async (id) => {
  const v = document.getElementById(id);
  const t0 = v.currentTime;
  await new Promise((r) => setTimeout(r, 300));
  return v.videoWidth > 0 && v.readyState >= 2 && v.currentTime > t0;
}
"""


def _decode(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _wait_playing(page: Page, element_id: str, timeout_ms: int = PLAY_TIMEOUT_MS) -> None:
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(PLAYING_JS, element_id):
        if time.monotonic() > deadline:
            state = page.get_by_test_id("connection-state").inner_text()
            raise AssertionError(
                f"#{element_id} did not play (connection state: {state!r}); console:\n"
                + "\n".join(getattr(page, "console_log", [])[-20:])
            )


def _region_diffs(
    local: np.ndarray, remote: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[float, float]:
    """Mean absolute difference inside the face box and in the background away from it."""
    diff = cv2.absdiff(cv2.GaussianBlur(local, (5, 5), 0), cv2.GaussianBlur(remote, (5, 5), 0)).mean(axis=2)
    x1, y1, x2, y2 = box
    face = diff[y1:y2, x1:x2].mean()
    # Background: everything outside the face box grown by its own size (the whole head and the
    # feathered edge of the swap lie within).
    mx, my = x2 - x1, y2 - y1
    mask = np.ones(diff.shape, bool)
    mask[max(0, y1 - my) : y2 + my, max(0, x1 - mx) : x2 + mx] = False
    return float(face), float(diff[mask].mean())


def _detail(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Fine detail in a region (variance of the Laplacian): a face hidden by pixelation or blur
    has little, a swapped face about as much as the original."""
    x1, y1, x2, y2 = box
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[y1:y2, x1:x2].astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _drop_file(page: Page, test_id: str, path: Path, mime: str) -> None:
    """Drag and drop a file onto an element, as the browser does for a file dragged from the desktop."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    transfer = page.evaluate_handle(
        """([data, name, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            return dt;
        }""",
        [data, path.name, mime],
    )
    target = page.get_by_test_id(test_id)
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})


def _save(name: str, image: np.ndarray | bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        cv2.imwrite(str(path), image)
    return path


def test_browser_swaps_the_camera_face(
    page: Page, server_url: str, camera_face_box: tuple[int, int, int, int]
) -> None:
    # Upload first (before connecting), through the page's real file input.
    page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
    thumb = page.get_by_test_id("source-thumbnail")
    thumb.wait_for(state="visible", timeout=10_000)
    assert (thumb.get_attribute("src") or "").startswith("data:image/")
    assert page.get_by_test_id("error").is_hidden()

    page.get_by_test_id("start-button").click()
    _wait_playing(page, "local-video")
    _wait_playing(page, "remote-video")
    page.wait_for_function(
        "document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        timeout=PLAY_TIMEOUT_MS,
    )

    # The stats overlay fills in from the server's once-per-second DataChannel message.
    fps_out = page.get_by_test_id("stat-fps-out")
    page.wait_for_function(
        "/^\\d+(\\.\\d+)?$/.test(document.querySelector('[data-testid=stat-fps-out]').textContent)",
        timeout=5_000,
    )
    assert page.get_by_test_id("stats-overlay").is_visible()
    assert float(fps_out.inner_text()) >= 0
    assert page.get_by_test_id("stat-engine").inner_text() not in ("", "–")
    # The codec the browser negotiated is the one the server asked for.
    codec = page.get_by_test_id("stat-codec")
    page.wait_for_function(
        "document.querySelector('[data-testid=stat-codec]').textContent !== '–'", timeout=5_000
    )
    assert codec.inner_text() == _get_json(f"{server_url}/api/info")["codec"]

    # The server counts swapped frames (as opposed to frames whose face it only hid while the swap
    # was not ready): the face change below must come from real swaps.
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
        timeout=10_000,
    )
    deadline = time.monotonic() + 8
    while True:
        grabs = page.evaluate(GRAB_JS, [640, 480])
        local, remote = _decode(grabs["local"]), _decode(grabs["remote"])
        face_diff, background_diff = _region_diffs(local, remote, camera_face_box)
        detail_ratio = _detail(remote, camera_face_box) / max(_detail(local, camera_face_box), 1e-6)
        swapped = face_diff > max(8.0, 5 * background_diff) and detail_ratio > 0.4
        if swapped or time.monotonic() > deadline:
            break
        page.wait_for_timeout(300)

    _save("browser_local.png", local)
    _save("browser_remote.png", remote)
    _save("browser_page.png", page.screenshot())
    stats = page.get_by_test_id("stats-overlay")
    metrics = {
        "face_box": camera_face_box,
        "face_diff": face_diff,
        "background_diff": background_diff,
        "detail_ratio": detail_ratio,
        "fps_out": fps_out.inner_text(),
        "swapped_frames": stats.get_attribute("data-swapped-frames"),
        "hidden_frames": stats.get_attribute("data-hidden-frames"),
    }
    _save("browser_metrics.json", json.dumps(metrics, indent=2).encode())
    assert background_diff < 12, f"background changed too much: {background_diff:.1f}"
    assert face_diff > max(8.0, 5 * background_diff), (
        f"face region barely changed: face {face_diff:.1f} vs background {background_diff:.1f}"
    )
    # A changed face could also be a hidden (pixelated) one; a swapped face keeps its detail.
    assert detail_ratio > 0.4, f"face region lost its detail (hidden, not swapped?): {detail_ratio:.2f}"

    # A new source while streaming takes effect without reconnecting.
    first_thumb = thumb.get_attribute("src")
    page.get_by_test_id("source-input").set_input_files(str(DATA / "grace_hopper.jpg"))
    page.wait_for_function(
        "(old) => document.querySelector('[data-testid=source-thumbnail]').src !== old",
        arg=first_thumb,
        timeout=10_000,
    )
    deadline = time.monotonic() + 8
    while True:
        later = _decode(page.evaluate(GRAB_JS, [640, 480])["remote"])
        change, background_change = _region_diffs(remote, later, camera_face_box)
        if change > max(5.0, 4 * background_change) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(300)
    _save("browser_remote_second_source.png", later)
    metrics.update(second_source_change=change, second_source_background_change=background_change)
    _save("browser_metrics.json", json.dumps(metrics, indent=2).encode())
    assert change > max(5.0, 4 * background_change), (
        f"the second source did not change the face: {change:.1f} vs background {background_change:.1f}"
    )
    assert page.get_by_test_id("connection-state").get_attribute("data-state") == "connected"
    assert page.get_by_test_id("error").is_hidden()

    # The server drops the session (as on a restart): the page reconnects by itself with a new
    # session and sends its source photo again, so the face is swapped again without any click.
    old_session = page.evaluate("window.swaprtc.sessionId")
    request = urllib.request.Request(
        f"{server_url}/api/session", method="DELETE", headers={"X-Session-Id": old_session}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
    page.wait_for_function(
        "(old) => window.swaprtc.sessionId && window.swaprtc.sessionId !== old"
        " && document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        arg=old_session,
        timeout=15_000,
    )
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
        timeout=10_000,
    )


def test_browser_negotiates_h264_when_the_server_asks(
    browser: Browser, model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if os.environ.get("SWAPRTC_BROWSER_TEST_URL"):
        pytest.skip("needs its own server started with --codec h264")
    with _running_server(model_store, tmp_path_factory.mktemp("h264"), SWAPRTC_CODEC="h264") as url:
        assert _get_json(f"{url}/api/info")["codec"] == "h264"
        context = browser.new_context(bypass_csp=True)
        try:
            page = context.new_page()
            page.goto(url + "/")
            page.get_by_test_id("start-button").click()
            _wait_playing(page, "remote-video")
            page.wait_for_function(
                "document.querySelector('[data-testid=stat-codec]').textContent !== '–'", timeout=5_000
            )
            assert page.get_by_test_id("stat-codec").inner_text() == "h264"
        finally:
            context.close()


def test_browser_reflects_engine_and_keeps_settings(page: Page, server_url: str) -> None:
    info = _get_json(f"{server_url}/api/info")
    engine = info["engine"]
    badge = page.get_by_test_id("engine-badge")
    page.wait_for_function("!document.getElementById('engine-badge').textContent.includes('…')")
    assert str(engine.get("engine") or engine.get("name")) in badge.inner_text()
    enhance = page.get_by_test_id("opt-enhance")
    if engine.get("engine") == "embedded":
        assert enhance.is_disabled()
        assert "not available" in page.get_by_test_id("enhance-note").inner_text().lower()

    # Settings survive a reload (localStorage); the keyboard reaches and toggles them.
    page.get_by_test_id("opt-many-faces").focus()
    page.keyboard.press("Space")
    page.get_by_test_id("opt-strength").fill("0.5")
    page.reload()
    assert page.get_by_test_id("opt-many-faces").is_checked()
    assert page.get_by_test_id("opt-strength").input_value() == "0.5"


def test_browser_tabs_are_separate_sessions(browser: Browser, server_url: str) -> None:
    context = browser.new_context(bypass_csp=True)
    try:
        tabs = [context.new_page(), context.new_page()]
        for tab in tabs:
            tab.goto(server_url + "/")
        # One tab through the file picker, the other by dropping a photo on the drop zone.
        tabs[0].get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        _drop_file(tabs[1], "dropzone", DATA / "grace_hopper.jpg", "image/jpeg")
        for tab in tabs:
            tab.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
        thumbs = [t.get_by_test_id("source-thumbnail").get_attribute("src") for t in tabs]
        assert thumbs[0] != thumbs[1]
        ids = [t.evaluate("window.swaprtc.sessionId") for t in tabs]
        assert ids[0] and ids[1] and ids[0] != ids[1]
        # The id lives in the tab's memory only, never in storage shared between tabs.
        stored = tabs[0].evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
        assert ids[0] not in stored and ids[1] not in stored
    finally:
        context.close()


def test_browser_frees_its_session_when_closed(browser: Browser, server_url: str) -> None:
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(server_url + "/")
        page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        page.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
        session_id = page.evaluate("window.swaprtc.sessionId")
        before = _get_json(f"{server_url}/api/health")["sessions"]
        page.close(run_before_unload=True)
        deadline = time.monotonic() + 5
        while _get_json(f"{server_url}/api/health")["sessions"] >= before:
            assert time.monotonic() < deadline, f"session {session_id} still alive after the tab closed"
            time.sleep(0.1)
    finally:
        context.close()


def test_browser_explains_missing_camera_api(browser: Browser, server_url: str) -> None:
    """Plain http on a LAN address has no navigator.mediaDevices: the page must say why."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.add_init_script(
            "Object.defineProperty(Navigator.prototype, 'mediaDevices', { get: () => undefined })"
        )
        page.goto(server_url + "/")
        banner = page.get_by_test_id("insecure-banner")
        banner.wait_for(state="visible", timeout=5_000)
        assert "https" in banner.inner_text()
        assert page.get_by_test_id("start-button").is_disabled()
        # Uploading a source still works without a camera.
        page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        page.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
    finally:
        context.close()


def test_browser_upload_error_is_readable(page: Page, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("this is not a photo\n")
    page.get_by_test_id("source-input").set_input_files(str(not_an_image))
    error = page.get_by_test_id("error")
    error.wait_for(state="visible", timeout=10_000)
    text = error.inner_text()
    assert "image" in text.lower()
    assert error.get_attribute("role") == "alert"
    assert error.get_attribute("data-code") in {"not_an_image", "unsupported_format"}
    assert page.get_by_test_id("source-thumbnail").is_hidden()
