"""The page under its own CSP against a server started with an access token: it asks for the
token once, keeps it for the tab (a reload does not ask again), and streams with it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser_support import (
    requires_chromium,
    running_server,
    wait_playing,
)

pytestmark = requires_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page
    from swaprtc.models.store import ModelStore

TOKEN = "tab-T0ken-42"


@pytest.fixture(scope="module")
def token_server(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(model_store, tmp_path_factory.mktemp("token"), SWAPRTC_TOKEN=TOKEN) as url:
        yield url


def _wait_engine_badge(page: Page, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.evaluate("document.getElementById('engine-badge').textContent")
        if "…" not in text:
            return str(text)
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine badge never filled in: {text!r}")
        page.wait_for_timeout(100)


def test_the_page_asks_for_the_token_once_per_tab(browser: Browser, token_server: str) -> None:
    context = browser.new_context()  # no bypass_csp: the page runs under its CSP
    try:
        page = context.new_page()
        dialogs: list[str] = []
        console: list[str] = []

        def answer(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.accept(TOKEN)

        page.on("dialog", answer)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(token_server + "/")
        assert _wait_engine_badge(page) == "engine: embedded", console
        assert len(dialogs) == 1 and "token" in dialogs[0]
        assert page.evaluate("sessionStorage.getItem('swaprtc.token')") == TOKEN

        # Session, offer and the control channel all work with the token.
        page.get_by_test_id("start-button").click()
        wait_playing(page, "remote-video")
        assert page.get_by_test_id("error").is_hidden()

        # A reload in the same tab keeps the token: no second question.
        page.reload()
        assert _wait_engine_badge(page) == "engine: embedded"
        assert len(dialogs) == 1
        violations = [line for line in console if "Content Security Policy" in line or "pageerror" in line]
        assert violations == [], violations
    finally:
        context.close()
