"""Several people in one camera picture, in Chromium against a real server process: sources picked
from a photo with several faces, a named source clicked onto a person, and that assignment kept
across reconnects (the server's people are new on every session)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.browser_support import (
    DATA,
    GRAB_ONE_JS,
    connect,
    decode_png,
    drop_session,
    flat_share,
    get_json,
    launch_chromium,
    region_diffs,
    requires_chromium,
    save_artifact,
    shown_until,
    stats_ticks,
    until,
    wait_reconnected,
)
from tests.y4m import fit_frame, write_y4m

if TYPE_CHECKING:
    import onnxruntime as ort
    from playwright.sync_api import Page, Playwright
    from swaprtc.pipeline.detector import RetinaFaceDetector

pytestmark = requires_chromium


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

    b = launch_chromium(driver, write_y4m(tmp_path / "two_people.y4m", [camera_frame] * 5))
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
        connect(page)
        reason = page.get_by_test_id("hidden-reason")
        reason.wait_for(state="visible", timeout=10_000)
        # While the first swaps warm up the reason is "faces hidden while the swap catches up".
        page.wait_for_function(
            "document.querySelector('[data-testid=hidden-reason]')?.innerText.startsWith('1 face hidden')",
            timeout=15_000,
        )

        # A busy machine sends some frames with every face hidden while a swap catches up.
        def grab_remote() -> np.ndarray:
            return decode_png(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))

        def flat_shares(remote: np.ndarray) -> list[float]:
            return sorted(flat_share(remote, box) for box in boxes)

        remote = shown_until(
            page, grab_remote, lambda shown: flat_shares(shown)[1] > 0.85 > flat_shares(shown)[0]
        )
        flat = flat_shares(remote)
        save_artifact("browser_two_people_hidden.png", remote)
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
        remote = shown_until(page, grab_remote, lambda shown: flat_shares(shown)[1] < 0.75)
        flat = flat_shares(remote)
        save_artifact("browser_two_people.png", remote)
        assert flat[1] < 0.75, f"both faces should be swapped now (none pixelated): flat shares {flat}"
        local = decode_png(page.evaluate(GRAB_ONE_JS, ["local-video", 640, 480]))
        for box in boxes:  # and both are other faces than the camera's
            face_diff, _ = region_diffs(local, remote, box)
            assert face_diff > 8.0, f"face at {box} unchanged: {face_diff:.1f}"
        ada = page.locator("[data-testid=extra-source][data-name=Ada]")
        assert "Ada → person" in ada.inner_text()
        # Unassigned, the person follows "swap every face" (off) again: hidden, and said so.
        ada.get_by_role("button", name="Unassign").click()
        reason.wait_for(state="visible", timeout=10_000)
        assert "Ada → person" not in ada.inner_text()
    finally:
        b.close()


# The camera as the page gets it, with one half of the picture covered while `window.__cover` is
# "left" or "right": a person who leaves the picture and comes back, on demand.
COVERABLE_CAMERA_JS = """
(() => {
  const devices = navigator.mediaDevices;
  if (!devices) return;
  const real = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    const camera = await real(constraints);
    const video = document.createElement("video");
    video.muted = true;
    video.srcObject = camera;
    await video.play();
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    const ctx = canvas.getContext("2d");
    const timer = setInterval(() => {
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      if (window.__cover) {
        ctx.fillStyle = "rgb(96, 96, 96)";
        ctx.fillRect(window.__cover === "left" ? 0 : canvas.width / 2, 0, canvas.width / 2, canvas.height);
      }
    }, 33);
    const stream = canvas.captureStream(30);
    const track = stream.getVideoTracks()[0];
    const stop = track.stop.bind(track);
    track.stop = () => {
      clearInterval(timer);
      camera.getTracks().forEach((t) => t.stop());
      stop();
    };
    return stream;
  };
})();
"""

# The stats entry of the person who has source `name` on the page's current session, or null.
PERSON_WITH_JS = (
    "(name) => window.swaprtc.people.find((p) => p.source === name && p.state === 'swapped') ?? null"
)


def _server_assignments(page: Page, server_url: str) -> list[str]:
    """The sources the server maps to people on the page's current session (GET /api/sources)."""
    sid = page.evaluate("window.swaprtc.sessionId")
    listing = get_json(f"{server_url}/api/sources?session={sid}")
    return sorted(a["source"] for a in listing["assignments"])


def _flat_shares(page: Page, boxes: list[tuple[int, int, int, int]]) -> list[float]:
    remote = decode_png(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
    return sorted(flat_share(remote, box) for box in boxes)


def _assert_ada_is_back(
    page: Page, server_url: str, boxes: list[tuple[int, int, int, int]], near: list[float]
) -> None:
    """Ada is the server's mapping again, on the person where she was, and both faces are swapped."""
    until(page, lambda: _server_assignments(page, server_url) == ["Ada"], "the server to map Ada again")
    ada = page.locator("[data-testid=extra-source][data-name=Ada]")
    until(page, lambda: "Ada → person" in ada.inner_text(), "the page to show Ada's person")
    assert ada.get_attribute("data-waiting") == "false"
    until(page, lambda: page.evaluate(PERSON_WITH_JS, "Ada") is not None, "a face swapped with Ada")
    box = page.evaluate(PERSON_WITH_JS, "Ada")["box"]
    assert abs((box[0] + box[2]) / 2 - (near[0] + near[2]) / 2) < 0.15, (box, near)
    until(page, lambda: _flat_shares(page, boxes)[1] < 0.75, "both faces swapped (none pixelated)")


def test_browser_restores_assigned_people_after_a_reconnect(
    driver: Playwright,
    server_url: str,
    two_people: tuple[np.ndarray, list[tuple[int, int, int, int]]],
    tmp_path: Path,
) -> None:
    """The server drops the session twice: once with Ada's person in view (the page gives Ada back
    to them at once), once while they are out of the picture (the page says it waits, and gives Ada
    back when they come back in view)."""
    camera_frame, boxes = two_people
    b = launch_chromium(driver, write_y4m(tmp_path / "two_people.y4m", [camera_frame] * 5))
    try:
        context = b.new_context(viewport={"width": 1366, "height": 768}, bypass_csp=True)
        context.add_init_script(COVERABLE_CAMERA_JS)
        page = context.new_page()
        page.goto(server_url + "/")
        page.get_by_test_id("source-input").set_input_files(str(DATA / "obama.jpg"))
        page.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
        connect(page)
        page.get_by_test_id("source-name").fill("Ada")
        page.get_by_test_id("extra-input").set_input_files(str(DATA / "grace_hopper.jpg"))
        page.locator("[data-testid=extra-source][data-name=Ada]").wait_for(timeout=10_000)
        hidden_person = page.locator("[data-testid=person].hidden")
        hidden_person.wait_for(timeout=10_000)
        hidden_person.click()
        until(page, lambda: _server_assignments(page, server_url) == ["Ada"], "the click to map Ada")
        until(page, lambda: page.evaluate(PERSON_WITH_JS, "Ada") is not None, "a face swapped with Ada")
        ada_box = page.evaluate(PERSON_WITH_JS, "Ada")["box"]

        # 1. Ada's person is in view when the page comes back.
        wait_reconnected(page, drop_session(page, server_url))
        _assert_ada_is_back(page, server_url, boxes, ada_box)
        assert "gets Ada again" in page.get_by_test_id("people-status").inner_text()

        # 2. Ada's person has left the picture when the page comes back: the assignment waits.
        cover = "left" if ada_box[0] + ada_box[2] < 1 else "right"
        page.evaluate("(side) => { window.__cover = side; }", cover)
        until(page, lambda: page.evaluate("window.swaprtc.people.length") == 1, "Ada's person to leave")
        wait_reconnected(page, drop_session(page, server_url))
        stats_ticks(page, 3)
        ada = page.locator("[data-testid=extra-source][data-name=Ada]")
        assert ada.get_attribute("data-waiting") == "true"
        assert "waiting" in ada.inner_text()
        assert _server_assignments(page, server_url) == []
        save_artifact(
            "browser_people_waiting.png", decode_png(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
        )

        page.evaluate("window.__cover = null")  # back in view
        _assert_ada_is_back(page, server_url, boxes, ada_box)
        remote = decode_png(page.evaluate(GRAB_ONE_JS, ["remote-video", 640, 480]))
        save_artifact("browser_people_restored.png", remote)
        local = decode_png(page.evaluate(GRAB_ONE_JS, ["local-video", 640, 480]))
        for box in boxes:  # both are other faces than the camera's
            face_diff, _ = region_diffs(local, remote, box)
            assert face_diff > 8.0, f"face at {box} unchanged: {face_diff:.1f}"

        # 3. The user gives up waiting: the person comes back and keeps no source of their own.
        page.evaluate("(side) => { window.__cover = side; }", cover)
        until(page, lambda: page.evaluate("window.swaprtc.people.length") == 1, "Ada's person to leave")
        wait_reconnected(page, drop_session(page, server_url))
        ada.get_by_role("button", name="Stop waiting").click()
        assert ada.get_attribute("data-waiting") == "false"
        page.evaluate("window.__cover = null")
        until(page, lambda: page.evaluate("window.swaprtc.people.length") == 2, "Ada's person to return")
        stats_ticks(page, 3)
        assert _server_assignments(page, server_url) == []
        assert ada.inner_text().strip().startswith("Ada") and "→" not in ada.inner_text()
        assert page.get_by_test_id("error").is_hidden(), page.get_by_test_id("error").inner_text()
    finally:
        b.close()
