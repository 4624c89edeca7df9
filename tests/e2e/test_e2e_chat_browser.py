"""The chat demo's page in a real browser (headless Chromium driven by playwright): two pages
chat, a third joins late and sees the history set apart from live lines, a refused name and
an invalid room show their reasons.

Uses Debian's chromium (``apt-get install chromium``; .ci/run installs it) at
``/usr/bin/chromium`` or ``$WSKIT_CHROMIUM``; playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from examples.chat.app import make_app
from wskit.aiohttp.testing import loopback_server

CHROMIUM = os.environ.get("WSKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_ERRORS: dict[int, list[Any]] = {}
WAIT_MS = 10_000  # how long an expectation may take to come true (a bound, not a sleep)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    async with loopback_server(make_app(), path="/ws") as server:
        yield server.http_url.removesuffix("ws")


async def open_chat(browser: Browser, url: str, name: str, room: str = "lobby") -> Page:
    page = await browser.new_page()
    errors = PAGE_ERRORS.setdefault(id(page), [])
    page.on("pageerror", lambda error: errors.append(error))
    await page.goto(url)
    await expect(page.locator("#status")).to_contain_text(" in #lobby", timeout=WAIT_MS)
    await page.fill("#name", name)
    await page.fill("#room", room)
    await page.click("#connect")
    return page


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_two_pages_chat_and_a_late_joiner_sees_history(
    browser: Browser, page_url: str
) -> None:
    alice = await open_chat(browser, page_url, "alice")
    await expect(alice.locator("#status")).to_have_text("alice in #lobby", timeout=WAIT_MS)
    bob = await open_chat(browser, page_url, "bob")
    await expect(bob.locator("#status")).to_have_text("bob in #lobby", timeout=WAIT_MS)
    await expect(alice.locator(".notice").last).to_have_text("bob joined", timeout=WAIT_MS)

    await say(alice, "hello bob")
    await say(bob, "hi alice")
    for page in (alice, bob):
        lines = page.locator(".line:not(.history)")
        await expect(lines).to_have_count(2, timeout=WAIT_MS)
        await expect(lines.nth(0).locator(".user")).to_have_text("alice")
        await expect(lines.nth(0)).to_contain_text("hello bob")
        await expect(lines.nth(1)).to_contain_text("hi alice")

    carol = await open_chat(browser, page_url, "carol")
    await expect(carol.locator("#status")).to_have_text("carol in #lobby", timeout=WAIT_MS)
    history = carol.locator(".line.history")
    await expect(history).to_have_count(2, timeout=WAIT_MS)
    await expect(history.nth(0)).to_contain_text("hello bob")
    await expect(history.nth(1)).to_contain_text("hi alice")
    dividers = carol.locator(".divider")
    await expect(dividers).to_have_text(["earlier in #lobby", "live in #lobby"])
    await expect(carol.locator(".line:not(.history)")).to_have_count(0)
    # History is set apart: its own background, not the live lines' one.
    live_bg = await alice.locator(".line:not(.history)").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    history_bg = await history.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert history_bg != live_bg

    await say(alice, "welcome carol")
    await expect(carol.locator(".line:not(.history)")).to_have_count(1, timeout=WAIT_MS)
    await expect(carol.locator(".line:not(.history)")).to_contain_text("welcome carol")
    for page in (alice, bob, carol):
        assert PAGE_ERRORS[id(page)] == []  # no uncaught exception in the page's script


async def test_refused_name_and_invalid_room_show_their_reasons(
    browser: Browser, page_url: str
) -> None:
    refused = await open_chat(browser, page_url, "not valid!")
    await expect(refused.locator("#status")).to_have_text("refused", timeout=WAIT_MS)
    await expect(refused.locator(".error")).to_have_text(
        "refused: Names are 1-24 of A-Z a-z 0-9 _ -: 'not valid!' is not one"
    )
    await expect(refused.locator("#send")).to_be_disabled()

    wrong_room = await open_chat(browser, page_url, "dave", room="Lobby")
    await expect(wrong_room.locator("#status")).to_have_text("dave: not in a room", timeout=WAIT_MS)
    await expect(wrong_room.locator(".error")).to_have_text(
        "could not join #Lobby: INVALID_ARGUMENT: "
        "Room names are 1-32 of a-z 0-9 _ - (lower case): 'Lobby'"
    )
    await expect(wrong_room.locator("#send")).to_be_disabled()
    await expect(wrong_room.locator("#room")).to_have_value("Lobby")  # not renamed
