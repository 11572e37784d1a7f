"""Shared fixtures: a real mosquitto per test on a free loopback port; leak checks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from tests.support import Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto broker for this test only."""
    broker = Mosquitto(tmp_path)
    with broker.running():
        yield broker


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals: the gateway opens one end, the simulated bus the other."""
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed; scripts/test.sh installs it")
    gw, bus = tmp_path / "gw", tmp_path / "bus"
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={gw}", f"pty,raw,echo=0,link={bus}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not (gw.exists() and bus.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        yield str(gw), str(bus)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
