"""The browser-test support (tests/browser.py, fixtures in tests/conftest.py) proven on a stand-in
page: a tiny aiohttp server on 127.0.0.1 whose page follows a Server-Sent Events feed, as the web
console's live view will.

What the console's own tests will lean on: pushes reach the DOM within a second, in every open
browser, and a dropped stream resumes with ``Last-Event-ID`` without losing or repeating events;
the origin guard blocks and reports a request elsewhere before it leaves the browser; Chinese text
is drawn with an installed CJK system font; a JavaScript error fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, expect

from tests.browser import WatchedContext, cjk_fonts, platform_fonts, screenshot
from tests.support import free_port

pytestmark = pytest.mark.browser

OpenContext = Callable[[str], Awaitable[WatchedContext]]

#: The font stack the console uses: the platform's own CJK fonts, never a downloaded one.
FONT_STACK = ('system-ui, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", '
              '"Source Han Sans SC", "WenQuanYi Micro Hei", sans-serif')
TITLE = "电梯困人报警 · 实时"

INDEX = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>stand-in</title>
<link rel="icon" href="data:,">
<style>body {{ font-family: {FONT_STACK}; margin: 1em; }}</style>
<script src="/app.js" defer></script></head>
<body><h1 id="title">{TITLE}</h1><p id="state">connecting</p><ol id="feed"></ol></body></html>
"""
# Renders each pushed message as a list item that keeps the event's id.
APP_JS = """
const source = new EventSource("/events");
source.onopen = () => { document.getElementById("state").textContent = "open"; };
source.onerror = () => { document.getElementById("state").textContent = "reconnecting"; };
source.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  item.dataset.id = event.lastEventId;
  document.getElementById("feed").append(item);
};
"""
THROWS = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
</head><body><script>
console.error("设备离线 (a console.error)");
setTimeout(() => { throw new Error("boom from a timer"); }, 0);
</script></body></html>
"""


def offsite_page(elsewhere: str) -> str:
    """A page that tries three ways to reach ``elsewhere``: an image, fetch() and a WebSocket."""
    host = elsewhere.removeprefix("http://")
    return f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
</head><body><img src="{elsewhere}/x.png" alt=""><script>
fetch("{elsewhere}/api").catch(() => {{}});
const ws = new WebSocket("ws://{host}/ws"); ws.onerror = () => {{}};
</script></body></html>
"""


@dataclass
class Hub:
    """The stand-in's event feed: numbered events, replay from ``Last-Event-ID``, live pushes."""

    events: list[tuple[int, str]] = field(default_factory=list)
    #: The Last-Event-ID header of each stream opened, in order (None: a first connection).
    connections: list[str | None] = field(default_factory=list)
    _streams: set[asyncio.Queue[tuple[int, str] | None]] = field(default_factory=set)

    def publish(self, data: str) -> int:
        event = (len(self.events) + 1, data)
        self.events.append(event)
        for stream in self._streams:
            stream.put_nowait(event)
        return event[0]

    def drop(self) -> None:
        """End every open stream, as a restarting server or a broken link would."""
        for stream in self._streams:
            stream.put_nowait(None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        self.connections.append(last)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        stream: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(maxsize=100)
        # Subscribe and take the backlog in one step: nothing is missed or sent twice.
        self._streams.add(stream)
        backlog = [e for e in self.events if last is None or e[0] > int(last)]
        try:
            await response.write(b"retry: 100\n\n")  # reconnect after 100 ms, not 3 s
            for event in backlog:
                await response.write(_sse(event))
            while (event_or_end := await stream.get()) is not None:
                await response.write(_sse(event_or_end))
        finally:
            self._streams.discard(stream)
        return response


def _sse(event: tuple[int, str]) -> bytes:
    return f"id: {event[0]}\ndata: {event[1]}\n\n".encode()


@dataclass
class StandIn:
    origin: str
    hub: Hub


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    hub = Hub()
    app = web.Application()
    pages = {"/": INDEX, "/throws.html": THROWS}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=pages[request.path], content_type="text/html")

    async def app_js(request: web.Request) -> web.Response:
        return web.Response(text=APP_JS, content_type="text/javascript")

    async def offsite(request: web.Request) -> web.Response:
        return web.Response(text=offsite_page(request.query["to"]), content_type="text/html")

    for path in pages:
        app.router.add_get(path, page)
    app.router.add_get("/app.js", app_js)
    app.router.add_get("/offsite.html", offsite)
    app.router.add_get("/events", hub.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield StandIn(f"http://127.0.0.1:{port}", hub)
    finally:
        hub.drop()  # an open stream would hold the shutdown for its whole timeout
        await runner.cleanup()


async def open_feed(browser_context: OpenContext, stand_in: StandIn) -> Page:
    """A page of a new watched context, its feed connected."""
    watched = await browser_context(stand_in.origin)
    page = await watched.new_page("/")
    await expect(page.locator("#state")).to_have_text("open", timeout=5000)
    return page


async def feed_of(page: Page) -> list[tuple[str, str]]:
    """(event id, text) of every item in the page's feed."""
    items = await page.locator("#feed li").evaluate_all(
        "items => items.map(i => [i.dataset.id, i.textContent])")
    return [(str(i), str(text)) for i, text in items]


async def test_a_push_reaches_the_page_within_a_second(
        browser_context: OpenContext, stand_in: StandIn) -> None:
    page = await open_feed(browser_context, stand_in)
    started = time.monotonic()
    stand_in.hub.publish("3 号梯困人")
    await expect(page.locator("#feed li")).to_have_text(["3 号梯困人"], timeout=1000)
    assert time.monotonic() - started < 1.0
    assert await feed_of(page) == [("1", "3 号梯困人")]


async def test_a_second_browser_sees_the_same_feed(
        browser_context: OpenContext, stand_in: StandIn) -> None:
    first = await open_feed(browser_context, stand_in)
    second = await open_feed(browser_context, stand_in)
    assert first.context is not second.context
    stand_in.hub.publish("火警 B1")
    stand_in.hub.publish("门禁 东门 强行开门")
    for page in (first, second):
        await expect(page.locator("#feed li")).to_have_text(
            ["火警 B1", "门禁 东门 强行开门"], timeout=1000)
    assert await feed_of(first) == await feed_of(second) == [
        ("1", "火警 B1"), ("2", "门禁 东门 强行开门")]


async def test_a_dropped_stream_resumes_from_last_event_id(
        browser_context: OpenContext, stand_in: StandIn) -> None:
    page = await open_feed(browser_context, stand_in)
    hub = stand_in.hub
    hub.publish("one")
    hub.publish("two")
    await expect(page.locator("#feed li")).to_have_count(2, timeout=1000)
    # The stream ends and two events happen before the browser can reconnect (no await in
    # between): the page only gets them if the server replays from the id the browser sends.
    hub.drop()
    hub.publish("three")
    hub.publish("four")
    await expect(page.locator("#feed li")).to_have_text(
        ["one", "two", "three", "four"], timeout=3000)
    assert hub.connections == [None, "2"]
    assert await feed_of(page) == [("1", "one"), ("2", "two"), ("3", "three"), ("4", "four")]
    assert (await page.locator("#state").text_content()) == "open"


async def test_the_origin_guard_blocks_and_reports_requests_elsewhere(
        browser_context: OpenContext, stand_in: StandIn) -> None:
    # Something real listens at the other origin: it must never see a connection.
    reached: list[object] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(writer.get_extra_info("peername"))
        writer.close()

    elsewhere_port = free_port()
    listener = await asyncio.start_server(count, "127.0.0.2", elsewhere_port)
    elsewhere = f"http://127.0.0.2:{elsewhere_port}"
    try:
        watched = await browser_context(stand_in.origin)
        page = await watched.new_page(f"/offsite.html?to={elsewhere}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while len(watched.off_origin) < 3:
                    await asyncio.sleep(0.02)
        await page.close()  # no more events after this: the take_* below see them all
    finally:
        listener.close()
        await listener.wait_closed()
    assert sorted(watched.off_origin) == sorted([
        f"{elsewhere}/x.png", f"{elsewhere}/api", f"ws://127.0.0.2:{elsewhere_port}/ws"])
    assert reached == []
    assert watched.requests[0] == f"{stand_in.origin}/offsite.html?to={elsewhere}"
    with pytest.raises(AssertionError, match=re.escape(f"{elsewhere}/x.png")):
        watched.assert_clean()
    watched.take_off_origin()
    assert watched.take_errors()  # chromium logs blocked loads as console errors
    watched.assert_clean()


async def test_a_javascript_error_is_reported(
        browser_context: OpenContext, stand_in: StandIn) -> None:
    watched = await browser_context(stand_in.origin)
    await watched.new_page("/throws.html")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while len(watched.errors) < 2:
                await asyncio.sleep(0.02)
    with pytest.raises(AssertionError, match="boom from a timer"):
        watched.assert_clean()
    errors = watched.take_errors()
    assert any("设备离线 (a console.error)" in e for e in errors), errors
    assert any(e.startswith("uncaught: ") and "boom from a timer" in e for e in errors), errors
    watched.assert_clean()


async def test_chinese_text_is_drawn_with_an_installed_cjk_font(
        browser_context: OpenContext, stand_in: StandIn, screenshot_dir: Path) -> None:
    page = await open_feed(browser_context, stand_in)
    stand_in.hub.publish("3 号梯困人 · 已派单")
    await expect(page.locator("#feed li")).to_have_count(1, timeout=1000)
    shot = await screenshot(page, screenshot_dir / "chinese.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 2000

    fontconfig = await asyncio.to_thread(cjk_fonts)
    cjk = fontconfig.families
    assert cjk, "no CJK font installed; scripts/setup.sh --test installs fonts-wqy-microhei"
    assert fontconfig.default in cjk, f"fontconfig picks {fontconfig.default!r} for Chinese"

    fonts = await platform_fonts(page, "#title")
    han = len(re.findall(r"[\u4e00-\u9fff]", TITLE))
    assert not any(font.downloaded for font in fonts), fonts
    assert sum(font.glyphs for font in fonts if font.family in cjk) >= han, fonts
