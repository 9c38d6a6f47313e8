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

from tests.label_check import carries_label, corner_distances, unchanged_corner
from tests.y4m import fit_frame, write_y4m

if TYPE_CHECKING:
    import onnxruntime as ort
    from playwright.sync_api import Browser, Page, Playwright, Route
    from swaprtc.models.store import ModelStore
    from swaprtc.pipeline.detector import RetinaFaceDetector

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path(os.environ.get("SWAPRTC_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

pytestmark = pytest.mark.skipif(
    not IN_CI and not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (set CI=true to require it)"
)

SERVER_START_S = 30.0
# The swap controls the page knows (docs/API.md): the neural engine's, and the embedded one's shape.
NEURAL_CONTROLS = [
    "mouth_mask",
    "mouth_mask_blur",
    "mouth_mask_padding",
    "color_correction",
    "enhance",
    "enhance_blend",
    "enhance_every",
]
SWAP_CONTROL_KEYS = {*NEURAL_CONTROLS, "shape", "many_faces", "strength"}
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
def driver() -> Iterator[Playwright]:
    """One Playwright driver per module: the shared browser and any with another camera."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is required under CI=true (install the Debian chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _launch(playwright: Playwright, camera: Path) -> Browser:
    """Chromium whose camera plays ``camera`` (a .y4m file) over and over."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
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


@pytest.fixture(scope="module")
def browser(driver: Playwright, fake_camera: Path) -> Iterator[Browser]:
    b = _launch(driver, fake_camera)
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

GRAB_ONE_JS = """
([id, w, h]) => {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  c.getContext('2d').drawImage(document.getElementById(id), 0, 0, w, h);
  return c.toDataURL('image/png');
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


def _flat_share(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of horizontally neighbouring pixels that are (nearly) equal in a region: about 0.95
    for a pixelated face (big flat blocks), under 0.5 for a real or swapped one."""
    x1, y1, x2, y2 = box
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[y1:y2, x1:x2].astype(np.int16)
    return float((np.abs(np.diff(gray, axis=1)) <= 2).mean())


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
    page: Page, server_url: str, camera_frame: np.ndarray, camera_face_box: tuple[int, int, int, int]
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

    # The camera gives what was asked for (640 x 480): the page shows it and does not complain.
    info = page.get_by_test_id("camera-info")
    assert "640 × 480" in info.inner_text() and info.get_attribute("data-ignored") == "false"
    # The stats overlay fills in from the server's once-per-second DataChannel message.
    fps_out = page.get_by_test_id("stat-fps-out")
    page.wait_for_function(
        "/^\\d+(\\.\\d+)?$/.test(document.querySelector('[data-testid=stat-fps-out]').textContent)",
        timeout=5_000,
    )
    assert page.get_by_test_id("stats-overlay").is_visible()
    # Frames flow: the server's measured output rate becomes positive (the first message may say 0).
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=stat-fps-out]').textContent) > 0", timeout=10_000
    )
    assert float(fps_out.inner_text()) > 0
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
    # The server burns its "AI-generated" label into swapped frames (on by default): the user sees it
    # in the swapped video's corner, where the camera picture has none.
    assert carries_label(remote, camera_frame), corner_distances(remote, camera_frame)

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


def test_browser_shows_no_label_when_the_operator_turns_it_off(
    browser: Browser,
    model_store: ModelStore,
    tmp_path_factory: pytest.TempPathFactory,
    camera_frame: np.ndarray,
    camera_face_box: tuple[int, int, int, int],
) -> None:
    """``--label off`` (here SWAPRTC_LABEL=off): swapped frames reach the page without the label,
    and the page does not claim there is one."""
    with _running_server(model_store, tmp_path_factory.mktemp("server-no-label"), SWAPRTC_LABEL="off") as url:
        assert _get_json(f"{url}/api/info")["label"]["enabled"] is False
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        try:
            pg = context.new_page()
            pg.goto(url + "/")
            pg.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
            pg.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
            pg.get_by_test_id("start-button").click()
            _wait_playing(pg, "remote-video")
            pg.wait_for_function(
                "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
                timeout=10_000,
            )
            deadline = time.monotonic() + 8
            while True:
                remote = _decode(pg.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
                face_diff, background_diff = _region_diffs(camera_frame, remote, camera_face_box)
                if face_diff > max(8.0, 5 * background_diff) or time.monotonic() > deadline:
                    break
                pg.wait_for_timeout(300)
            _save("browser_remote_no_label.png", remote)
            # The frame really is a swapped one, and still its corner is the camera's own picture.
            assert face_diff > max(8.0, 5 * background_diff), (face_diff, background_diff)
            assert unchanged_corner(remote, camera_frame), corner_distances(remote, camera_frame)
            assert pg.get_by_test_id("label-note").is_hidden()
        finally:
            context.close()


def test_browser_reflects_engine_and_keeps_settings(page: Page, server_url: str) -> None:
    info = _get_json(f"{server_url}/api/info")
    engine = info["engine"]
    badge = page.get_by_test_id("engine-badge")
    page.wait_for_function("!document.getElementById('engine-badge').textContent.includes('…')")
    assert str(engine.get("engine") or engine.get("name")) in badge.inner_text()
    enhance = page.get_by_test_id("opt-enhance")
    controls = info.get("controls")
    if isinstance(controls, list):
        # Exactly the engine's own controls are shown.
        shown = page.evaluate(
            "[...document.querySelectorAll('[data-control]')]"
            ".filter((f) => !f.hidden).map((f) => f.dataset.control)"
        )
        assert sorted(shown) == sorted(k for k in controls if k in SWAP_CONTROL_KEYS)
    elif engine.get("engine") == "embedded":
        assert enhance.is_disabled()
        assert "not available" in page.get_by_test_id("enhance-note").inner_text().lower()
    # The page tells users about the server's burned-in label exactly when the operator has it on.
    label = info.get("label")
    labelled = isinstance(label, dict) and bool(label.get("enabled"))
    assert page.get_by_test_id("label-note").is_visible() == labelled

    # Settings survive a reload (localStorage); the keyboard reaches and toggles them.
    page.get_by_test_id("opt-many-faces").focus()
    page.keyboard.press("Space")
    page.get_by_test_id("opt-strength").fill("0.5")
    mirrored = "getComputedStyle(document.getElementById('local-video')).transform.startsWith('matrix(-1')"
    assert page.get_by_test_id("opt-mirror").is_checked() and page.evaluate(mirrored)  # by default
    page.get_by_test_id("opt-mirror").uncheck()
    page.reload()
    assert page.get_by_test_id("opt-many-faces").is_checked()
    assert page.get_by_test_id("opt-strength").input_value() == "0.5"
    assert not page.get_by_test_id("opt-mirror").is_checked() and not page.evaluate(mirrored)


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


def _connected(page: Page) -> None:
    page.get_by_test_id("start-button").click()
    _wait_playing(page, "remote-video")
    page.wait_for_function(
        "document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        timeout=PLAY_TIMEOUT_MS,
    )


def _stats_ticks(page: Page, n: int = 2) -> None:
    """Waits for ``n`` more of the server's once-per-second stats messages."""
    page.evaluate(
        """(n) => new Promise((resolve) => {
            const box = document.querySelector('[data-testid=stats-overlay]');
            let seen = 0;
            const obs = new MutationObserver(() => { if (++seen >= n) { obs.disconnect(); resolve(); } });
            obs.observe(box, { attributes: true, attributeFilter: ['data-swapped-frames', 'title'] });
        })""",
        n,
    )


def test_browser_gets_the_swapped_video_out(browser: Browser, server_url: str, tmp_path: Path) -> None:
    """Snapshot (PNG), clip (WebM), fullscreen, picture-in-picture and the clean output window."""
    import av

    context = browser.new_context(
        viewport={"width": 1366, "height": 768}, accept_downloads=True, bypass_csp=True
    )
    try:
        page = context.new_page()
        page.goto(server_url + "/")
        # The fake camera only has 640 x 480: the page must say the request was not honoured.
        page.get_by_test_id("quality-select").select_option("720")
        page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        page.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
        _connected(page)
        info = page.get_by_test_id("camera-info")
        assert "640 × 480" in info.inner_text() and "ignored the requested 1280 × 720" in info.inner_text()
        assert info.get_attribute("data-ignored") == "true"
        # Self-view mirrored by default; the swapped video is not (it is what others see).
        transform = "(id) => getComputedStyle(document.getElementById(id)).transform"
        assert page.evaluate(transform, "local-video").startswith("matrix(-1")
        assert page.evaluate(transform, "remote-video") == "none"

        page.wait_for_function(
            "document.querySelector('[data-testid=swap-badge]').dataset.swapping === 'true'", timeout=10_000
        )
        with page.expect_download() as shot:
            page.get_by_test_id("snapshot-button").click()
        assert shot.value.suggested_filename.endswith(".png")
        png = cv2.imread(str(shot.value.path()), cv2.IMREAD_COLOR)
        assert png is not None and png.shape == (480, 640, 3)
        remote = _decode(page.evaluate(GRAB_JS, [640, 480])["remote"])
        _save("browser_snapshot.png", png)
        _save("browser_snapshot_grab.png", remote)
        assert float(png.std()) > 20, "the snapshot is a blank picture"
        assert float(cv2.absdiff(png, remote).mean()) < 12, "the snapshot is not the swapped video"

        record = page.get_by_test_id("record-button")
        record.click()
        assert record.get_attribute("aria-pressed") == "true"
        page.wait_for_timeout(2500)
        with page.expect_download() as clip:
            record.click()
        assert clip.value.suggested_filename.endswith(".webm")
        webm = tmp_path / "clip.webm"
        clip.value.save_as(webm)
        with av.open(str(webm)) as container:
            frames = [f for f in container.decode(video=0)]
        assert len(frames) >= 10, f"only {len(frames)} frames in the clip"
        assert (frames[-1].width, frames[-1].height) == (640, 480)
        assert float(frames[-1].to_ndarray(format="gray").std()) > 20

        page.get_by_test_id("fullscreen-button").click()
        page.wait_for_function("document.fullscreenElement?.id === 'remote-tile'", timeout=5_000)
        page.evaluate("document.exitFullscreen()")
        pip = page.get_by_test_id("pip-button")
        if page.evaluate("document.pictureInPictureEnabled"):
            pip.click()
            page.wait_for_function("document.pictureInPictureElement?.id === 'remote-video'", timeout=5_000)
            page.evaluate("document.exitPictureInPicture()")
        else:  # Headless builds may have no picture-in-picture: the button must not pretend.
            assert pip.is_disabled()

        # The clean output window shows the same swapped stream, and nothing else.
        with context.expect_page() as popup_info:
            page.get_by_test_id("output-button").click()
        popup = popup_info.value
        popup.wait_for_load_state()
        _wait_playing(popup, "output-video")
        assert popup.locator("button, input, select").count() == 0
        out = _decode(popup.evaluate(GRAB_ONE_JS, ["output-video", 640, 480]))
        assert float(cv2.absdiff(out, remote).mean()) < 12
        assert popup.get_by_test_id("output-note").is_hidden()
        # Stop in the main page: the output window says so instead of freezing on the last frame.
        page.get_by_test_id("stop-button").click()
        popup.get_by_test_id("output-note").wait_for(state="visible", timeout=5_000)
        # A new stream (Start again, or a reconnect) is picked up by the open output window.
        page.get_by_test_id("start-button").click()
        popup.get_by_test_id("output-note").wait_for(state="hidden", timeout=PLAY_TIMEOUT_MS)
        _wait_playing(popup, "output-video")
    finally:
        context.close()


def _luminance(css_rgb: str) -> float:
    r, g, b = (int(v) / 255 for v in css_rgb[css_rgb.index("(") + 1 : css_rgb.index(")")].split(",")[:3])
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _inside_viewport(page: Page, test_id: str) -> bool:
    box = page.get_by_test_id(test_id).bounding_box()
    view = page.viewport_size
    assert box is not None and view is not None
    return box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= view["height"] + 0.5


def test_browser_phone_layout(browser: Browser, server_url: str, tmp_path: Path) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, bypass_csp=True
    )
    try:
        page = context.new_page()
        page.goto(server_url + "/")
        # The Start button's text is readable (WCAG AA: contrast >= 4.5:1), from computed styles.
        colours = page.evaluate(
            "() => { const s = getComputedStyle(document.getElementById('start-btn'));"
            " return [s.color, s.backgroundColor]; }"
        )
        lighter, darker = sorted((_luminance(c) for c in colours), reverse=True)
        contrast = (lighter + 0.05) / (darker + 0.05)
        assert contrast >= 4.5, f"Start button contrast {contrast:.2f}:1 ({colours})"

        # Connected without a source face: the badge must not claim a swap.
        _connected(page)
        _stats_ticks(page, 2)
        badge = page.get_by_test_id("swap-badge")
        assert badge.get_attribute("data-swapping") == "false"
        assert "Not swapped" in badge.inner_text()

        # A failed upload far down the page is reported where the user is looking.
        page.get_by_test_id("source-choose").scroll_into_view_if_needed()
        not_an_image = tmp_path / "notes.txt"
        not_an_image.write_text("this is not a photo\n")
        page.get_by_test_id("source-input").set_input_files(str(not_an_image))
        page.get_by_test_id("error").wait_for(state="visible", timeout=10_000)
        assert _inside_viewport(page, "error"), "the upload error is outside the viewport"
        assert "image" in page.get_by_test_id("source-status").inner_text().lower()
        page.locator("#error-dismiss").click()

        page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        page.wait_for_function(
            "document.querySelector('[data-testid=swap-badge]').dataset.swapping === 'true'", timeout=10_000
        )
        assert badge.inner_text() == "Swapped"
        # The self-view picture-in-picture does not cover the server's "AI-generated" label.
        label = _get_json(f"{server_url}/api/info")["label"]
        if label["enabled"]:
            own, video = (page.locator(s).bounding_box() for s in (".tile-local", "#remote-video"))
            assert own is not None and video is not None
            zone_x = video["x"] + (0 if label["position"].endswith("left") else 0.7 * video["width"])
            zone_y = video["y"] + (0 if label["position"].startswith("top") else 0.88 * video["height"])
            apart = (
                own["x"] >= zone_x + 0.3 * video["width"]
                or own["x"] + own["width"] <= zone_x
                or own["y"] >= zone_y + 0.12 * video["height"]
                or own["y"] + own["height"] <= zone_y
            )
            assert apart, f"the self-view {own} covers the label's corner ({label['position']})"

        # The video stays in view while a setting far down is adjusted.
        page.get_by_test_id("opt-strength").scroll_into_view_if_needed()
        assert _inside_viewport(page, "opt-strength")
        assert _inside_viewport(page, "remote-video"), "the video scrolled away while adjusting settings"

        # The server drops the session: the tile says it is reconnecting instead of going black.
        old_session = page.evaluate("window.swaprtc.sessionId")
        request = urllib.request.Request(
            f"{server_url}/api/session", method="DELETE", headers={"X-Session-Id": old_session}
        )
        urllib.request.urlopen(request, timeout=5).close()
        page.wait_for_function(
            "() => { const p = document.querySelector('[data-testid=remote-placeholder]');"
            " return !p.hidden && /Reconnecting/.test(p.textContent); }",
            timeout=10_000,
        )
        assert _inside_viewport(page, "remote-placeholder")
        page.wait_for_function(
            "document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'"
            " && document.querySelector('[data-testid=remote-placeholder]').hidden",
            timeout=15_000,
        )
        _save("browser_phone.png", page.screenshot())
    finally:
        context.close()


# Records what the page sends on its DataChannel (the settings messages the server acts on).
SPY_DATACHANNEL_JS = """
window.__sent = [];
const send = RTCDataChannel.prototype.send;
RTCDataChannel.prototype.send = function (data) {
  try { window.__sent.push(JSON.parse(data)); } catch {}
  return send.call(this, data);
};
"""


def test_browser_swap_controls_follow_the_engine(browser: Browser, server_url: str) -> None:
    """Controls appear only where /api/info lists them, live over the DataChannel, kept on reload.
    The engine's list is set here (a neural engine's) so that the page logic is tested on any server."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, bypass_csp=True)
    try:

        def neural_info(route: Route) -> None:
            info = route.fetch().json()
            info["controls"] = ["many_faces", "strength", *NEURAL_CONTROLS]
            route.fulfill(json=info)

        context.route("**/api/info", neural_info)
        context.add_init_script(SPY_DATACHANNEL_JS)
        page = context.new_page()
        page.goto(server_url + "/")
        page.get_by_test_id("opt-mouth-mask").wait_for(state="visible", timeout=5_000)
        for key in NEURAL_CONTROLS:
            assert page.locator(f"[data-control={key}]").is_visible(), key
        assert page.locator("[data-control=shape]").is_hidden()  # the embedded engine's
        blur = page.get_by_test_id("opt-mouth-mask-blur")
        assert blur.is_disabled()  # nothing to blur while the mouth mask is off
        page.get_by_test_id("opt-mouth-mask").check()
        assert blur.is_enabled()
        blur.fill("0.5")
        page.get_by_test_id("opt-color-correction").check()
        page.get_by_test_id("opt-enhance").check()
        page.get_by_test_id("opt-enhance-every").fill("3")
        assert page.locator("#opt-enhance-every-out").inner_text() == "3rd frame"

        page.reload()
        page.get_by_test_id("opt-mouth-mask").wait_for(state="visible", timeout=5_000)
        assert page.get_by_test_id("opt-mouth-mask").is_checked()
        assert blur.input_value() == "0.5"
        assert page.get_by_test_id("opt-enhance-every").input_value() == "3"

        _connected(page)
        page.wait_for_function("window.__sent.some((m) => m.type === 'settings')", timeout=5_000)
        sent = page.evaluate("window.__sent.filter((m) => m.type === 'settings').at(-1)")
        assert sent["mouth_mask"] is True and sent["mouth_mask_blur"] == 0.5
        assert sent["color_correction"] is True and sent["enhance"] is True and sent["enhance_every"] == 3
        assert "shape" not in sent  # never sent to an engine that does not list it
        # A live change goes out at once, and the server takes it without complaint.
        page.get_by_test_id("opt-mouth-mask-padding").fill("0.25")
        page.wait_for_function(
            "window.__sent.some((m) => m.mouth_mask_padding === 0.25)",
            timeout=2_000,
        )
        _stats_ticks(page, 2)
        assert page.get_by_test_id("error").is_hidden(), page.get_by_test_id("error").inner_text()
    finally:
        context.close()


def _around_face(image: np.ndarray, detector: RetinaFaceDetector, width: int, height: int) -> np.ndarray:
    """A width x height picture of the photo's face with some shoulders, like a video call."""
    x1, y1, x2, y2 = detector.detect(image)[0].bbox[:4]
    crop_h = 2.4 * (y2 - y1)
    crop_w = crop_h * width / height
    left, top = int(max(0, (x1 + x2 - crop_w) / 2)), int(max(0, (y1 + y2) / 2 - 0.45 * crop_h))
    return fit_frame(image[top : int(top + crop_h), left : int(left + crop_w)], width, height)


@pytest.fixture(scope="module")
def two_people(
    astronaut_bgr: np.ndarray, grace_bgr: np.ndarray, retinaface_session: ort.InferenceSession
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 640x480 camera picture of two people side by side, and their face boxes."""
    from swaprtc.pipeline.detector import RetinaFaceDetector

    detector = RetinaFaceDetector(retinaface_session)
    frame = np.hstack([_around_face(img, detector, 320, 480) for img in (astronaut_bgr, grace_bgr)])
    boxes = [tuple(round(float(v)) for v in f.bbox[:4]) for f in detector.detect(frame)]
    assert len(boxes) == 2, "the two-people camera picture must show two faces"
    return frame, boxes  # type: ignore[return-value]


def test_browser_chooses_faces_and_maps_people(
    driver: Playwright,
    server_url: str,
    two_people: tuple[np.ndarray, list[tuple[int, int, int, int]]],
    obama_bgr: np.ndarray,
    grace_bgr: np.ndarray,
    tmp_path: Path,
) -> None:
    """A photo with two faces: pick one, see warnings; two people in the camera: the one left
    out is hidden and the page says why, until a second source is clicked onto that person."""
    camera_frame, boxes = two_people
    # Source photo: a large face and, beside it, a face too small to be a good source.
    small = np.full((600, 200, 3), 128, np.uint8)
    small[230:370, 40:160] = fit_frame(grace_bgr, 120, 140)
    photo = tmp_path / "two_faces.jpg"
    cv2.imwrite(str(photo), np.hstack([fit_frame(obama_bgr, 480, 600), small]))

    b = _launch(driver, write_y4m(tmp_path / "two_people.y4m", [camera_frame] * 5))
    try:
        page = b.new_page(viewport={"width": 1366, "height": 768}, bypass_csp=True)
        page.goto(server_url + "/")
        page.get_by_test_id("source-input").set_input_files(str(photo))
        faces = page.locator("[data-testid=source-face]")
        faces.nth(1).wait_for(state="visible", timeout=10_000)
        assert faces.count() == 2
        assert faces.nth(0).get_attribute("aria-pressed") == "true"
        assert page.get_by_test_id("source-warnings").is_hidden()
        first_thumb = page.get_by_test_id("source-thumbnail").get_attribute("src")

        faces.nth(1).click()
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=source-face]')[1]?.ariaPressed === 'true'",
            timeout=10_000,
        )
        assert page.get_by_test_id("source-thumbnail").get_attribute("src") != first_thumb
        warnings = page.get_by_test_id("source-warnings")
        assert warnings.is_visible() and "small" in warnings.inner_text().lower()
        assert "80 px" in warnings.inner_text()  # the reason, not just a flag
        page.locator("[data-testid=source-face]").nth(0).click()
        warnings.wait_for(state="hidden", timeout=10_000)

        # Only the largest face is swapped: the other is hidden, and the page says why.
        _connected(page)
        reason = page.get_by_test_id("hidden-reason")
        reason.wait_for(state="visible", timeout=10_000)
        # While the first swaps warm up the reason is "faces hidden while the swap catches up".
        page.wait_for_function(
            "document.querySelector('[data-testid=hidden-reason]')?.innerText.startsWith('1 face hidden')",
            timeout=15_000,
        )
        # A busy machine sends some frames with every face hidden while a swap catches up.
        deadline = time.monotonic() + 8
        while True:
            remote = _decode(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
            flat = sorted(_flat_share(remote, box) for box in boxes)
            if flat[1] > 0.85 > flat[0] or time.monotonic() > deadline:
                break
            page.wait_for_timeout(300)
        _save("browser_two_people_hidden.png", remote)
        assert flat[1] > 0.85 > flat[0], f"one face should be pixelated, one swapped: flat shares {flat}"

        # A second, named source, clicked onto the hidden person.
        page.get_by_test_id("source-name").fill("Ada")
        page.get_by_test_id("extra-input").set_input_files(str(DATA / "grace_hopper.jpg"))
        page.locator("[data-testid=extra-source][data-name=Ada]").wait_for(timeout=10_000)
        page.get_by_test_id("assign-hint").wait_for(state="visible")
        hidden_person = page.locator("[data-testid=person].hidden")
        hidden_person.wait_for(timeout=5_000)
        hidden_person.click()
        page.wait_for_function(
            "/now gets Ada/.test(document.querySelector('[data-testid=people-status]').textContent)",
            timeout=5_000,
        )
        reason.wait_for(state="hidden", timeout=10_000)
        deadline = time.monotonic() + 8
        while True:
            remote = _decode(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
            flat = sorted(_flat_share(remote, box) for box in boxes)
            if flat[1] < 0.75 or time.monotonic() > deadline:
                break
            page.wait_for_timeout(300)
        _save("browser_two_people.png", remote)
        assert flat[1] < 0.75, f"both faces should be swapped now (none pixelated): flat shares {flat}"
        local = _decode(page.evaluate(GRAB_ONE_JS, ["local-video", 640, 480]))
        for box in boxes:  # and both are other faces than the camera's
            face_diff, _ = _region_diffs(local, remote, box)
            assert face_diff > 8.0, f"face at {box} unchanged: {face_diff:.1f}"
        ada = page.locator("[data-testid=extra-source][data-name=Ada]")
        assert "Ada → person" in ada.inner_text()
        # Unassigned, the person follows "swap every face" (off) again: hidden, and said so.
        ada.get_by_role("button", name="Unassign").click()
        reason.wait_for(state="visible", timeout=10_000)
        assert "Ada → person" not in ada.inner_text()
    finally:
        b.close()
