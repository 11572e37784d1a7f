"""Browser-test support: Debian's chromium driven by Playwright, and what a page may not do.

The web console is tested in a real headless Chromium. Playwright's own browser download cannot
work on these machines, so the browser is Debian's ``chromium`` package (``scripts/setup.sh
--test`` installs it) and Playwright only brings its driver, which ships inside the wheel.

A page under test must stay on the gateway's origin (no CDN, no web font, no analytics) and must
not throw: :class:`WatchedContext` records every request of its pages, blocks and remembers each
one that leaves the origin, and remembers every uncaught JavaScript error and ``console.error``.
The ``browser_context`` fixture in ``tests/conftest.py`` fails a test that leaves any of these
behind; a test that provokes one on purpose takes it with the ``take_*`` methods.

One Playwright driver and one browser per test: starting both costs about 0.4 s (measured on two
cores), and a browser bound to one test's event loop fits the suite's function-scoped loops and
its leaked-task check without exemptions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Route,
    WebError,
    WebSocketRoute,
    async_playwright,
)

__all__ = ["CjkFonts", "PlatformFont", "WatchedContext", "chromium", "chromium_args",
           "chromium_path", "cjk_fonts", "http_statuses", "origin_of", "platform_fonts",
           "screenshot"]

#: URL schemes that never reach the network; a page may use them freely.
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
DEFAULT_PORTS = {"http": 80, "https": 443}
#: WebSocket URLs belong to the origin of the HTTP server that upgrades them.
WS_SCHEMES = {"ws": "http", "wss": "https"}


def chromium_path() -> str:
    """Debian's chromium, or an error that says how to get it."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed; run scripts/test.sh (or scripts/setup.sh "
                           "--test), which installs Debian's chromium package")
    return path


def chromium_args() -> list[str]:
    """Flags on top of Playwright's own (which already add ``--disable-dev-shm-usage``).

    ``--host-resolver-rules``: chromium looks up Google hosts (accounts, updates) on its own even
    with Playwright's switches against background networking. Every host but the loopback ones
    "not found" keeps those lookups, and whatever would follow them, off the network (the rule
    covers IP addresses too, hence the exclusions).
    """
    return ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, "
            "EXCLUDE [::1]"]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium and its Playwright driver, both bound to the running event loop."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=chromium_args(),
            # Chromium refuses to start as root with its sandbox, and these machines run as
            # root; an ordinary user keeps it. (Playwright's default is no sandbox at all.)
            chromium_sandbox=os.geteuid() != 0)
        try:
            yield browser
        finally:
            await browser.close()


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, default ports spelled out, ``ws`` counted as ``http``."""
    parts = urlsplit(url)
    scheme = WS_SCHEMES.get(parts.scheme, parts.scheme)
    port = parts.port or DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{parts.hostname}:{port}"


@dataclass
class WatchedContext:
    """A fresh browser context whose pages must stay on ``origin`` and must not throw.

    Requests to other origins are aborted before they leave the browser, so a stray CDN link
    costs no traffic, and are kept in :attr:`off_origin`.
    """

    context: BrowserContext
    origin: str
    #: Every request the context's pages made, in order (blocked ones too).
    requests: list[str] = field(default_factory=list)
    #: Requests and WebSockets to another origin, all of them blocked.
    off_origin: list[str] = field(default_factory=list)
    #: Uncaught JavaScript errors and ``console.error`` messages.
    errors: list[str] = field(default_factory=list)
    #: Set by :meth:`stop_recording`; requests elsewhere are still blocked.
    recording: bool = True

    @classmethod
    async def open(cls, browser: Browser, origin: str) -> WatchedContext:
        # Service workers would fetch past the router, so the context allows none.
        context = await browser.new_context(service_workers="block")
        watched = cls(context, origin_of(origin))
        context.on("request", watched._on_request)
        context.on("console", watched._on_console)
        context.on("weberror", watched._on_weberror)
        await context.route(watched._leaves_origin, watched._block)
        await context.route_web_socket(watched._leaves_origin, watched._block_web_socket)
        return watched

    async def new_page(self, path: str = "/") -> Page:
        """A new page of this context, loaded from ``path`` on the origin."""
        page = await self.context.new_page()
        await page.goto(self.origin + path)
        return page

    def take_off_origin(self) -> list[str]:
        """The off-origin requests so far, forgotten (for a test that provokes them)."""
        taken, self.off_origin = self.off_origin, []
        return taken

    def take_errors(self) -> list[str]:
        """The JavaScript errors so far, forgotten (for a test that provokes them)."""
        taken, self.errors = self.errors, []
        return taken

    def assert_clean(self) -> None:
        """Fail if a page left the origin or threw."""
        assert not self.off_origin, (
            f"pages requested outside {self.origin} (blocked): {self.off_origin}")
        assert not self.errors, f"errors on the pages: {self.errors}"

    def stop_recording(self) -> None:
        """Ignore what happens from now on, e.g. the errors of a page whose server is stopping."""
        self.recording = False

    def _leaves_origin(self, url: str) -> bool:
        return urlsplit(url).scheme not in LOCAL_SCHEMES and origin_of(url) != self.origin

    def _on_request(self, request: Request) -> None:
        if self.recording:
            self.requests.append(request.url)

    def _on_console(self, message: ConsoleMessage) -> None:
        if self.recording and message.type == "error":
            self.errors.append(f"console.error: {message.text} ({message.location['url']})")

    def _on_weberror(self, error: WebError) -> None:
        if self.recording:
            self.errors.append(f"uncaught: {error.error}")

    async def _block(self, route: Route) -> None:
        if self.recording:
            self.off_origin.append(route.request.url)
        await route.abort("blockedbyclient")

    async def _block_web_socket(self, route: WebSocketRoute) -> None:
        if self.recording:
            self.off_origin.append(route.url)
        await route.close(code=1008, reason="outside the page's origin")


async def screenshot(page: Page, path: Path) -> Path:
    """The whole page as a PNG at ``path`` (directories made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path


@dataclass(frozen=True)
class PlatformFont:
    """A font the browser drew an element's text with (as chromium reports it)."""

    family: str
    glyphs: int
    downloaded: bool


async def platform_fonts(page: Page, selector: str) -> list[PlatformFont]:
    """The system fonts chromium used to draw the text of the first element matching ``selector``.

    Through the DevTools protocol: this names the font that actually drew the glyphs, where
    computed styles only repeat the CSS font stack.
    """
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("DOM.enable")
        await cdp.send("CSS.enable")
        document = await cdp.send("DOM.getDocument", {"depth": 0})
        found = await cdp.send("DOM.querySelector",
                               {"nodeId": document["root"]["nodeId"], "selector": selector})
        if not found["nodeId"]:
            raise LookupError(f"no element matches {selector!r}")
        # Chromium answers for the element's own text nodes.
        answer = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": found["nodeId"]})
        fonts = [PlatformFont(font["familyName"], int(font["glyphCount"]),
                              bool(font["isCustomFont"])) for font in answer["fonts"]]
        return fonts
    finally:
        await cdp.detach()


@dataclass(frozen=True)
class CjkFonts:
    """What fontconfig offers for Simplified Chinese."""

    #: The family ``fc-match 'sans-serif:lang=zh-cn'`` picks (a Latin font when none is CJK).
    default: str
    #: Every family that covers Simplified Chinese (empty without a CJK font).
    families: frozenset[str]


def cjk_fonts() -> CjkFonts:
    """Ask fontconfig (blocking: call it through ``asyncio.to_thread``)."""
    def fc(*args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True, check=True,
                              timeout=30).stdout

    default = fc("fc-match", "-f", "%{family[0]}", "sans-serif:lang=zh-cn")
    families = frozenset(name.strip() for line in fc("fc-list", ":lang=zh-cn", "family")
                         .splitlines() for name in line.split(",") if name.strip())
    return CjkFonts(default.strip(), families)


def http_statuses(errors: list[str]) -> list[int]:
    """The HTTP statuses of the failed requests among ``errors`` (Chromium's "the server
    responded with a status of N"). A plain ``"401" in e`` would also count a URL whose port
    happens to contain 401."""
    return [int(m[1]) for e in errors if (m := _STATUS.search(e))]


_STATUS = re.compile(r"responded with a status of (\d{3})\b")

