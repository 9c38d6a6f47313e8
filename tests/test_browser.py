"""Real browser end to end: Debian's Chromium with a fake camera playing a real face, against a real
server process. The page uploads a source face through its real file input, connects, and the
swapped <video> must show a changed face region over an unchanged background.

The server, browser and page fixtures and the pixel helpers are in tests/browser_support.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.browser_support import (
    DATA,
    GRAB_JS,
    GRAB_ONE_JS,
    PLAY_TIMEOUT_MS,
    connect,
    decode_png,
    detail,
    drop_file,
    drop_session,
    get_json,
    region_diffs,
    requires_chromium,
    running_server,
    save_artifact,
    shown_until,
    stats_ticks,
    wait_playing,
    wait_reconnected,
)
from tests.label_check import carries_label, corner_distances, unchanged_corner

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route
    from swaprtc.models.store import ModelStore

pytestmark = requires_chromium

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
    wait_playing(page, "local-video")
    wait_playing(page, "remote-video")
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
    assert codec.inner_text() == get_json(f"{server_url}/api/info")["codec"]

    # The server counts swapped frames (as opposed to frames whose face it only hid while the swap
    # was not ready): the face change below must come from real swaps.
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
        timeout=10_000,
    )

    def grab() -> tuple[np.ndarray, np.ndarray]:
        grabs = page.evaluate(GRAB_JS, [640, 480])
        return decode_png(grabs["local"]), decode_png(grabs["remote"])

    def measure(shown: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float]:
        local, remote = shown
        face_diff, background_diff = region_diffs(local, remote, camera_face_box)
        return (
            face_diff,
            background_diff,
            detail(remote, camera_face_box) / max(detail(local, camera_face_box), 1e-6),
        )

    def swapped_look(shown: tuple[np.ndarray, np.ndarray]) -> bool:
        face_diff, background_diff, detail_ratio = measure(shown)
        return face_diff > max(8.0, 5 * background_diff) and detail_ratio > 0.4

    local, remote = shown_until(page, grab, swapped_look)
    face_diff, background_diff, detail_ratio = measure((local, remote))

    save_artifact("browser_local.png", local)
    save_artifact("browser_remote.png", remote)
    save_artifact("browser_page.png", page.screenshot())
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
    save_artifact("browser_metrics.json", json.dumps(metrics, indent=2).encode())
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

    def changed(later: np.ndarray) -> bool:
        change, background_change = region_diffs(remote, later, camera_face_box)
        return change > max(5.0, 4 * background_change)

    later = shown_until(page, lambda: decode_png(page.evaluate(GRAB_JS, [640, 480])["remote"]), changed)
    change, background_change = region_diffs(remote, later, camera_face_box)
    save_artifact("browser_remote_second_source.png", later)
    metrics.update(second_source_change=change, second_source_background_change=background_change)
    save_artifact("browser_metrics.json", json.dumps(metrics, indent=2).encode())
    assert change > max(5.0, 4 * background_change), (
        f"the second source did not change the face: {change:.1f} vs background {background_change:.1f}"
    )
    assert page.get_by_test_id("connection-state").get_attribute("data-state") == "connected"
    assert page.get_by_test_id("error").is_hidden()

    # The server drops the session (as on a restart): the page reconnects by itself with a new
    # session and sends its source photo again, so the face is swapped again without any click.
    wait_reconnected(page, drop_session(page, server_url))
    page.wait_for_function(
        "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
        timeout=10_000,
    )


def test_browser_negotiates_h264_when_the_server_asks(
    browser: Browser, model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if os.environ.get("SWAPRTC_BROWSER_TEST_URL"):
        pytest.skip("needs its own server started with --codec h264")
    with running_server(model_store, tmp_path_factory.mktemp("h264"), SWAPRTC_CODEC="h264") as url:
        assert get_json(f"{url}/api/info")["codec"] == "h264"
        context = browser.new_context(bypass_csp=True)
        try:
            page = context.new_page()
            page.goto(url + "/")
            page.get_by_test_id("start-button").click()
            wait_playing(page, "remote-video")
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
    with running_server(model_store, tmp_path_factory.mktemp("server-no-label"), SWAPRTC_LABEL="off") as url:
        assert get_json(f"{url}/api/info")["label"]["enabled"] is False
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        try:
            pg = context.new_page()
            pg.goto(url + "/")
            pg.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
            pg.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
            pg.get_by_test_id("start-button").click()
            wait_playing(pg, "remote-video")
            pg.wait_for_function(
                "Number(document.querySelector('[data-testid=stats-overlay]').dataset.swappedFrames) > 0",
                timeout=10_000,
            )

            def swapped_look(remote: np.ndarray) -> bool:
                face_diff, background_diff = region_diffs(camera_frame, remote, camera_face_box)
                return face_diff > max(8.0, 5 * background_diff)

            remote = shown_until(
                pg, lambda: decode_png(pg.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480])), swapped_look
            )
            face_diff, background_diff = region_diffs(camera_frame, remote, camera_face_box)
            save_artifact("browser_remote_no_label.png", remote)
            # The frame really is a swapped one, and still its corner is the camera's own picture.
            assert face_diff > max(8.0, 5 * background_diff), (face_diff, background_diff)
            assert unchanged_corner(remote, camera_frame), corner_distances(remote, camera_frame)
            assert pg.get_by_test_id("label-note").is_hidden()
        finally:
            context.close()


def test_browser_reflects_engine_and_keeps_settings(page: Page, server_url: str) -> None:
    info = get_json(f"{server_url}/api/info")
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
        drop_file(tabs[1], "dropzone", DATA / "grace_hopper.jpg", "image/jpeg")
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
        before = get_json(f"{server_url}/api/health")["sessions"]
        page.close(run_before_unload=True)
        deadline = time.monotonic() + 5
        while get_json(f"{server_url}/api/health")["sessions"] >= before:
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
        connect(page)
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
        remote = decode_png(page.evaluate(GRAB_JS, [640, 480])["remote"])
        save_artifact("browser_snapshot.png", png)
        save_artifact("browser_snapshot_grab.png", remote)
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
        wait_playing(popup, "output-video")
        assert popup.locator("button, input, select").count() == 0
        out = decode_png(popup.evaluate(GRAB_ONE_JS, ["output-video", 640, 480]))
        assert float(cv2.absdiff(out, remote).mean()) < 12
        assert popup.get_by_test_id("output-note").is_hidden()
        # Stop in the main page: the output window says so instead of freezing on the last frame.
        page.get_by_test_id("stop-button").click()
        popup.get_by_test_id("output-note").wait_for(state="visible", timeout=5_000)
        # A new stream (Start again, or a reconnect) is picked up by the open output window.
        page.get_by_test_id("start-button").click()
        popup.get_by_test_id("output-note").wait_for(state="hidden", timeout=PLAY_TIMEOUT_MS)
        wait_playing(popup, "output-video")
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
        connect(page)
        stats_ticks(page, 2)
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
        label = get_json(f"{server_url}/api/info")["label"]
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
        drop_session(page, server_url)
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
        save_artifact("browser_phone.png", page.screenshot())
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

        connect(page)
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
        stats_ticks(page, 2)
        assert page.get_by_test_id("error").is_hidden(), page.get_by_test_id("error").inner_text()
    finally:
        context.close()
