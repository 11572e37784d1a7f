"""Shared fixtures: a real mosquitto per test on a free loopback port, a headless chromium;
leak checks."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from gateway.clock import FakeClock
from simulators import virtual_serial
from tests import fuzz_support  # noqa: F401  # registers and loads the hypothesis profile
from tests.browser import WatchedContext, chromium, screenshot
from tests.influx_support import influxd, shim  # noqa: F401  # fixtures: a real influxd and its v2 shim
from tests.support import Mosquitto

#: Each test's reports by phase ("setup", "call", "teardown"), for fixtures that act on failure.
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
#: The browser contexts a test opened (fixture ``browser_context``).
WATCHED = pytest.StashKey[list[WatchedContext]]()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto broker for this test only."""
    broker = Mosquitto(tmp_path)
    with broker.running():
        yield broker


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A virtual RS-485 line: (gateway end, simulated bus end)."""
    with virtual_serial.pty_pair(tmp_path) as pair:
        yield pair


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless chromium (Debian's) for this test only; see tests/browser.py."""
    async with chromium() as launched:
        yield launched


@pytest.fixture
def screenshot_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where this test's screenshots go: under ``$PROPGW_SCREENSHOTS`` if set, else tmp_path."""
    root = os.environ.get("PROPGW_SCREENSHOTS")
    if not root:
        return tmp_path / "screenshots"
    return Path(root) / re.sub(r"[^\w.-]+", "_", request.node.nodeid)


@pytest.fixture
async def browser_context(
        browser: Browser, request: pytest.FixtureRequest, screenshot_dir: Path,
) -> AsyncIterator[Callable[[str], Awaitable[WatchedContext]]]:
    """Opens fresh browser contexts watched for one origin: ``await browser_context(origin)``.

    Afterwards the test fails if a page requested anything outside its origin or had a
    JavaScript error that the test did not take, while the test ran: what pages do once the
    test function returned (say, fail to reconnect to a server that fixtures are stopping) does
    not count. A failed test leaves a screenshot of every open page in ``screenshot_dir``.
    """
    opened = request.node.stash.setdefault(WATCHED, [])

    async def open_context(origin: str) -> WatchedContext:
        watched = await WatchedContext.open(browser, origin)
        opened.append(watched)
        return watched

    yield open_context
    call = request.node.stash.get(REPORTS, {}).get("call")
    failed = call is None or call.failed
    try:
        if failed:
            for n, watched in enumerate(opened):
                for m, page in enumerate(watched.context.pages):
                    await screenshot(page, screenshot_dir / f"failed-{n}-{m}.png")
    finally:
        for watched in opened:
            await watched.context.close()
    if not failed:
        for watched in opened:
            watched.assert_clean()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running behind it (they would hide shutdown bugs)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    for _ in range(20):
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked:
            break
        await asyncio.sleep(0.01)
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads behind (executor threads excepted)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in set(threading.enumerate()) - before
              if t.is_alive() and not t.daemon
              and not t.name.startswith(("asyncio_", "ThreadPool"))]
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
        item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item (``REPORTS``)."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Browser contexts judge only what their pages did while the test function ran."""
    try:
        yield
    finally:
        for watched in item.stash.get(WATCHED, []):
            watched.stop_recording()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the browser is a ``browser`` test, marked or not."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault drills' table (tests/drill_support.py), when any drill ran."""
    from tests.drill_support import REPORT, TABLE_HEADER

    if not REPORT:
        return
    terminalreporter.section("fault drills")
    terminalreporter.write_line(TABLE_HEADER)
    for row in REPORT:
        terminalreporter.write_line(row.markdown())
