"""What the headless-Chromium tests share (registered in tests/conftest.py): a real ``swaprtc serve``
process, Debian's Chromium driven by Playwright with a fake camera, and helpers that read what
the page shows (pixels of its <video> elements, its stats).

Runs under ``CI=true`` always (a missing Chromium is then a failure); elsewhere the browser tests
skip only when /usr/bin/chromium is missing (each test module sets ``pytestmark =
requires_chromium``). ``SWAPRTC_BROWSER_TEST_URL`` points the ``server_url`` fixture at an already
running server instead of starting one (e.g. a GPU box running the neural engine).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np
import pytest

from tests.y4m import fit_frame, write_y4m

if TYPE_CHECKING:
    import onnxruntime as ort
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright
    from swaprtc.models.store import ModelStore

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path(os.environ.get("SWAPRTC_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

requires_chromium = pytest.mark.skipif(
    not IN_CI and not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (set CI=true to require it)"
)

SERVER_START_S = 30.0
PLAY_TIMEOUT_MS = 15_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict:
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
def running_server(model_store: ModelStore, log_dir: Path, **env_extra: str) -> Iterator[str]:
    """A real ``swaprtc serve`` process on a free loopback port; yields its base URL."""
    for name in ("retinaface_mnet025", "face_landmark"):
        model_store.ensure(name)  # Fetch once into the test cache; the server then finds them there.
    port = free_port()
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
                if get_json(f"{url}/healthz").get("ok"):  # open even with --token
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
    with running_server(model_store, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Playwright]:
    """One Playwright driver per module: the shared browser and any with another camera."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is required under CI=true (install the Debian chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch_chromium(playwright: Playwright, camera: Path) -> Browser:
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
    b = launch_chromium(driver, fake_camera)
    try:
        yield b
    finally:
        b.close()


def open_page(context: BrowserContext, url: str) -> Page:
    """A new page of ``context`` at ``url`` that keeps its console messages and page errors in
    ``page.console_log`` ("<type>: <text>", "pageerror: <error>")."""
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.goto(url)
    pg.console_log = console  # type: ignore[attr-defined]
    return pg


def console_errors(page: Page) -> list[str]:
    """The page's console errors and uncaught exceptions so far (pages from ``open_page``)."""
    log: list[str] = getattr(page, "console_log", [])
    return [line for line in log if line.startswith(("error: ", "pageerror: "))]


# Contexts bypass the page's CSP: Playwright polls wait_for_function predicates through eval,
# which the CSP forbids. tests/test_browser_token.py runs the page under its CSP.
@pytest.fixture
def page(browser: Browser, server_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = open_page(context, server_url + "/")
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


def decode_png(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def wait_playing(page: Page, element_id: str, timeout_ms: int = PLAY_TIMEOUT_MS) -> None:
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(PLAYING_JS, element_id):
        if time.monotonic() > deadline:
            state = page.get_by_test_id("connection-state").inner_text()
            raise AssertionError(
                f"#{element_id} did not play (connection state: {state!r}); console:\n"
                + "\n".join(getattr(page, "console_log", [])[-20:])
            )


def region_diffs(
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


def detail(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Fine detail in a region (variance of the Laplacian): a face hidden by pixelation or blur
    has little, a swapped face about as much as the original."""
    x1, y1, x2, y2 = box
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[y1:y2, x1:x2].astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def flat_share(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of horizontally neighbouring pixels that are (nearly) equal in a region: about 0.95
    for a pixelated face (big flat blocks), under 0.5 for a real or swapped one."""
    x1, y1, x2, y2 = box
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[y1:y2, x1:x2].astype(np.int16)
    return float((np.abs(np.diff(gray, axis=1)) <= 2).mean())


def drop_file(page: Page, test_id: str, path: Path, mime: str) -> None:
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


def save_artifact(name: str, image: np.ndarray | bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        cv2.imwrite(str(path), image)
    return path


def connect(page: Page) -> None:
    page.get_by_test_id("start-button").click()
    wait_playing(page, "remote-video")
    page.wait_for_function(
        "document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        timeout=PLAY_TIMEOUT_MS,
    )


def stats_ticks(page: Page, n: int = 2) -> None:
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


def drop_session(page: Page, server_url: str) -> str:
    """The server ends the page's session (as on a restart, or when the connection is lost for
    good): the page has to reconnect with a new one. Returns the old session id."""
    old_session = str(page.evaluate("window.swaprtc.sessionId"))
    request = urllib.request.Request(
        f"{server_url}/api/session", method="DELETE", headers={"X-Session-Id": old_session}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
    return old_session


def wait_reconnected(page: Page, old_session: str, timeout_ms: int = 15_000) -> None:
    """Until the page streams again on a session other than ``old_session``."""
    page.wait_for_function(
        "(old) => window.swaprtc.sessionId && window.swaprtc.sessionId !== old"
        " && document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        arg=old_session,
        timeout=timeout_ms,
    )


def shown_until(page: Page, grab: Callable[[], T], ok: Callable[[T], bool], timeout_s: float = 8.0) -> T:
    """What ``grab`` reads from the page (pixels), again every 300 ms until ``ok`` holds or the time
    is up: the last reading, which the caller asserts on, so a timeout fails with measured values."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = grab()
        if ok(shown) or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(300)


def until(page: Page, condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Polls ``condition`` (Python side: server calls, page reads) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)  # lets Playwright deliver route and console events meanwhile
