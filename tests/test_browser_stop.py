"""The page's connection lifecycle in Chromium against a real server process: Stop at any moment
leaves no peer connection, no server session and no console error behind; the server's
--max-bitrate reaches the browser's encoder; a photo chosen while a reconnect re-uploads the
previous one is the one in use afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser_support import (
    DATA,
    connect,
    console_errors,
    get_json,
    open_page,
    requires_chromium,
    running_server,
    until,
)

pytestmark = requires_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route
    from swaprtc.models.store import ModelStore

MAX_BITRATE = 2_500_000  # not the default (4 Mbit/s), so the page cannot have guessed it

# Every RTCPeerConnection the page makes, so a test can see whether any was left open.
TRACK_PEER_CONNECTIONS = """
window.__pcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
"""
OPEN_PCS_JS = "window.__pcs.filter((pc) => pc.signalingState !== 'closed').length"


@pytest.fixture(scope="module")
def server(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(
        model_store,
        tmp_path_factory.mktemp("stop"),
        SWAPRTC_MAX_BITRATE=str(MAX_BITRATE),
        SWAPRTC_RATE_SESSION_PER_MIN="0",
        SWAPRTC_RATE_OFFER_PER_MIN="0",
        SWAPRTC_RATE_SOURCE_PER_MIN="0",
    ) as url:
        yield url


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(bypass_csp=True)
    context.add_init_script(TRACK_PEER_CONNECTIONS)
    pg = open_page(context, server + "/")
    try:
        yield pg
    finally:
        context.close()


def _sessions(server: str) -> int:
    return int(get_json(f"{server}/api/health")["sessions"])


def _upload_default(page: Page, name: str) -> None:
    page.get_by_test_id("source-input").set_input_files(str(DATA / name))


def test_stop_while_the_session_is_being_created_leaves_nothing_behind(page: Page, server: str) -> None:
    held: list[Route] = []
    page.route(
        "**/api/session",
        lambda route: held.append(route) if route.request.method == "POST" else route.continue_(),
    )
    page.get_by_test_id("start-button").click()
    until(page, lambda: bool(held), "the session request")
    page.get_by_test_id("stop-button").click()
    held[0].continue_()  # the server creates the session only now, after Stop
    page.wait_for_timeout(1500)
    assert page.evaluate(OPEN_PCS_JS) == 0, "a peer connection was opened (and left open) after Stop"
    until(page, lambda: _sessions(server) == 0, "the orphan session to be deleted", timeout_s=5)
    assert page.evaluate("window.swaprtc.sessionId") is None
    assert console_errors(page) == []


def test_stop_after_streaming_is_quiet_and_max_bitrate_reaches_the_encoder(page: Page, server: str) -> None:
    assert get_json(f"{server}/api/info")["max_bitrate"] == MAX_BITRATE
    for _ in range(2):
        connect(page)
        encodings = page.evaluate("window.__pcs.at(-1).getSenders()[0].getParameters().encodings")
        assert encodings[0]["maxBitrate"] == MAX_BITRATE
        # Let the server end the session by itself first (peer connection closed) when it can:
        # the page's DELETE then finds it gone, which must not be an error.
        page.get_by_test_id("stop-button").click()
        until(page, lambda: _sessions(server) == 0, "the session to end")
    assert page.evaluate(OPEN_PCS_JS) == 0
    assert console_errors(page) == []


def test_a_photo_chosen_during_the_reconnect_upload_is_the_one_in_use(page: Page, server: str) -> None:
    _upload_default(page, "obama.jpg")
    page.get_by_test_id("source-thumbnail").wait_for(state="visible", timeout=10_000)
    connect(page)
    page.get_by_test_id("stop-button").click()  # the next start makes a new session: re-upload

    held: list[Route] = []
    forwarded: list[str] = []

    def name_of(route: Route) -> str:
        body = route.request.post_data_buffer or b""
        return "grace" if b'filename="grace_hopper.jpg"' in body else "obama"

    def on_source(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
        elif not held:
            held.append(route)  # the reconnect's re-upload of the old photo: hold it
        else:
            forwarded.append(name_of(route))
            route.continue_()

    page.route("**/api/source*", on_source)
    page.get_by_test_id("start-button").click()
    until(page, lambda: bool(held), "the re-upload of the first photo")
    assert name_of(held[0]) == "obama"
    _upload_default(page, "grace_hopper.jpg")  # chosen while that upload is in flight
    page.wait_for_timeout(1000)
    forwarded.append(name_of(held[0]))
    held[0].continue_()
    until(page, lambda: len(forwarded) >= 2, "both uploads")
    page.wait_for_function(
        "document.querySelector('[data-testid=connection-state]').dataset.state === 'connected'",
        timeout=15_000,
    )
    # The server got the photos in the order the user chose them: the last one is in use.
    assert forwarded[-1] == "grace", forwarded
    page.wait_for_function(
        "window.swaprtc.source?.file.name === 'grace_hopper.jpg'"
        " && window.swaprtc.source.sessionId === window.swaprtc.sessionId",
        timeout=10_000,
    )
