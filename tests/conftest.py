"""Shared fixtures: a real mosquitto per test on a free loopback port; leak checks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from simulators import virtual_serial
from tests import fuzz_support  # noqa: F401  # registers and loads the hypothesis profile
from tests.support import Mosquitto


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault drills' table (tests/drill_support.py), when any drill ran."""
    from tests.drill_support import REPORT, TABLE_HEADER

    if not REPORT:
        return
    terminalreporter.section("fault drills")
    terminalreporter.write_line(TABLE_HEADER)
    for row in REPORT:
        terminalreporter.write_line(row.markdown())
