"""The status API under clients that are slow, many or oversized: real servers on loopback,
real sockets, and a real ``propgw run`` with a lowered open-file limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.clock import FakeClock
from gateway.config import HttpServerLimits, StatusApiConfig
from gateway.http_server import WebServer, platform_server
from gateway.workorders import WorkOrder, WorkOrderDesk
from tests.support import free_port, kill_if_running, make_tls_files, stop_and_read
from tests.test_escalation import SITE, event

REPO = Path(__file__).resolve().parents[1]
TOKEN = "status-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEAD = b"POST /api/v1/work-orders/x/status HTTP/1.1\r\nHost: gw\r\n"


@dataclass
class SlowClients:
    """``count`` slowloris connections: each sends part of a head, then one header line every
    ``every`` seconds, never the blank line that ends it."""

    port: int
    count: int
    every: float = 0.2
    opened: int = 0
    closed_by_server: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def open(self) -> None:
        for _ in range(self.count):
            try:
                async with asyncio.timeout(2):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(HEAD)
            except (OSError, TimeoutError):
                continue
            self.opened += 1
            self._writers.append(writer)

    async def trickle(self) -> None:
        """Until cancelled; connections the server closed are dropped from the list."""
        while True:
            await asyncio.sleep(self.every)
            for writer in list(self._writers):
                try:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                except OSError:
                    self.closed_by_server += 1
                    self._writers.remove(writer)
                    writer.close()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()


@dataclass
class Served:
    api: WebServer
    order: WorkOrder

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api.port}/api/v1"


@contextlib.asynccontextmanager
async def serving(clock: FakeClock, tls: Path | None = None,
                  **limits: object) -> AsyncIterator[Served]:
    async def sink(order: WorkOrder) -> None:
        pass

    desk = WorkOrderDesk(SITE, clock, sink)
    order = await desk.handle(event(clock))
    assert order is not None
    files = make_tls_files(tls) if tls is not None else None
    cfg = StatusApiConfig(port=free_port(), token=TOKEN,
                          limits=HttpServerLimits.model_validate(limits),
                          cert_file=files.server_cert if files else None,
                          key_file=files.server_key if files else None)
    api = platform_server(cfg, desk.apply_status)
    task = asyncio.create_task(api.run(), name="status-api")
    try:
        await asyncio.wait_for(api.serving.wait(), 5)
        yield Served(api, order)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _exchange(port: int, request: bytes) -> tuple[bytes, float]:
    """Send raw bytes; return what the server answers until it closes, and how long its
    first line took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            first = await reader.readline()
            took = time.monotonic() - started
            return first + await reader.read(), took
    finally:
        writer.close()


async def test_slow_clients_cannot_crowd_out_the_platform(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.http_guard")
    async with serving(fake_clock, max_connections=16, header_timeout=30) as served:
        slow = SlowClients(served.api.port or 0, count=300)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, served.api.open_connections)
                await asyncio.sleep(0.005)

        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(watch())
            await slow.open()
            trickle = tg.create_task(slow.trickle())
            await asyncio.sleep(0.5)  # the slow ones hold every slot and keep talking
            assert served.api.open_connections == 16
            started = time.monotonic()
            async with aiohttp.ClientSession() as http, http.post(
                    f"{served.base}/work-orders/{served.order.id}/status", headers=AUTH,
                    json={"status": "acknowledged"}) as response:
                assert response.status == 200
            elapsed = time.monotonic() - started
            trickle.cancel()
            watcher.cancel()
        slow.close()
    assert slow.opened == 300
    assert elapsed < 1.0, f"the platform waited {elapsed:.2f}s for a slot"
    assert peak <= 16, f"{peak} connections held at once, the limit is 16"
    records = [r for r in caplog.records if r.name.startswith("gateway.http_guard")
               and r.levelno >= logging.INFO]
    limit_lines = [r for r in records if "connections open, the limit" in r.getMessage()]
    assert len(limit_lines) == 1, [r.getMessage() for r in records]
    assert len(records) <= 4, [r.getMessage() for r in records]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_head_that_never_completes_is_closed_after_header_timeout(
        fake_clock: FakeClock) -> None:
    async with serving(fake_clock, header_timeout=0.5) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.api.port)
        started = time.monotonic()
        writer.write(HEAD)
        try:
            async with asyncio.timeout(5):
                while await reader.read(1024):
                    pass
        except ConnectionResetError:
            pass
        finally:
            writer.close()
        elapsed = time.monotonic() - started
        assert served.api.open_connections == 0
    assert 0.4 < elapsed < 1.5, f"closed after {elapsed:.2f}s, the deadline is 0.5 s"


async def test_an_oversized_head_is_a_400_with_one_short_log_line(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    big = (b"GET /api/v1/upstream/health HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 20_000
           + b"\r\n\r\n")
    async with serving(fake_clock) as served:
        for _ in range(5):
            answer, _ = await _exchange(served.api.port or 0, big)
            assert answer.split(b" ", 2)[1] == b"400", answer[:100]
    lines = [r for r in caplog.records if "bad request" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].levelname == "WARNING" and len(lines[0].getMessage()) < 300
    assert not any(r.exc_info or "Traceback" in r.getMessage() for r in caplog.records)


async def test_tls_handshakes_that_never_finish_count_and_give_way(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    async with serving(fake_clock, tls=tmp_path, max_connections=4,
                       header_timeout=0.5) as served:
        port = served.api.port or 0
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        await asyncio.sleep(0.1)
        assert served.api.open_connections == 4, "a handshake in progress holds a slot"
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        async with aiohttp.ClientSession() as http, http.get(
                f"https://127.0.0.1:{port}/api/v1/upstream/health", headers=AUTH,
                ssl=context) as response:
            assert response.status == 200
        await asyncio.sleep(0.8)  # past the handshake deadline
        assert served.api.open_connections == 0
        for _, writer in silent:
            writer.close()


async def test_bodies_are_bounded_in_size_and_time_and_only_read_when_authorised(
        fake_clock: FakeClock) -> None:
    async with serving(fake_clock, body_timeout=0.5) as served:
        port = served.api.port or 0
        url = f"/api/v1/work-orders/{served.order.id}/status"
        huge = (f"POST {url} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: 100000\r\n\r\n").encode()
        answer, _ = await _exchange(port, huge)
        assert answer.startswith(b"HTTP/1.1 413 ")
        anonymous = (f"POST {url} HTTP/1.1\r\nHost: gw\r\nContent-Length: 50\r\n\r\n"
                     "{").encode()
        answer, took = await _exchange(port, anonymous)
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert took < 0.4, "refused without waiting for the body"
        slow = (f"POST {url} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: 50\r\n\r\n{{").encode()
        answer, took = await _exchange(port, slow)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < took < 2.0
        assert served.api.open_connections == 0, "every error answer closed its connection"


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.mark.slow
async def test_a_gateway_at_128_file_descriptors_survives_300_slow_clients(
        tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text(f"""
site: {{id: s, name: s, gateway_id: g}}
upstream:
  http: {{url: "http://127.0.0.1:{free_port()}/work-orders"}}
  status_api:
    port: {port}
    token: {TOKEN}
    limits: {{max_connections: 16, header_timeout: 2s}}
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "-c", str(config), "--log-level", "INFO",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_low_fd_limit)
    try:
        async with asyncio.timeout(15):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
        slow = SlowClients(port, count=300)
        async with asyncio.TaskGroup() as tg:
            await slow.open()
            trickle = tg.create_task(slow.trickle())
            await asyncio.sleep(1.0)
            started = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{port}/api/v1/upstream/health", headers=AUTH) as response:
                assert response.status == 200
                health = await response.json()
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.0)
            trickle.cancel()
        slow.close()
        output, _ = await stop_and_read(proc)
    finally:
        await kill_if_running(proc)
    text = output.decode()
    assert proc.returncode == 0, text
    assert elapsed < 1.0, text
    assert "outbox" in health
    for symptom in ("Too many open files", "out of system resource", "Traceback"):
        assert symptom not in text, text
    assert len(text.splitlines()) <= 12, text


def _soft_fd_limit_256() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))


async def test_propgw_run_raises_its_soft_open_file_limit_to_the_hard_one(
        tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("site: {id: s, name: s, gateway_id: g}\n"
                      f"upstream: {{http: {{url: 'http://127.0.0.1:{free_port()}/wo'}}}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "-c", str(config), "--log-level", "DEBUG",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_soft_fd_limit_256)
    lines: list[bytes] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            while b"running" not in (line := await proc.stdout.readline()):
                assert line, "the gateway ended before running"
                lines.append(line)
        limits = await asyncio.to_thread(Path(f"/proc/{proc.pid}/limits").read_text)
    finally:
        proc.kill()  # the limit is what this test is about, not the way out
        await proc.communicate()
    [open_files] = [line.split() for line in limits.splitlines()
                    if line.startswith("Max open files")]
    assert open_files[3:5] == ["4096", "4096"], limits
    assert any(b"DEBUG   propgw: open-file limit raised from 256 to 4096" in line
               for line in lines), lines
