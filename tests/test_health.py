"""The health model says "ok" only while the pipe moves; the watchdog is fed only then."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.backoff import Backoff
from gateway.clock import FakeClock
from gateway.config import HealthConfig, load_config_text
from gateway.health import HealthModel, HealthReport, JournalStatus
from gateway.liveness import Liveness
from gateway.outbox import DeliveryProgress, Outbox, OutboxItem
from gateway.supervisor import Supervisor
from gateway.upstream import UpstreamPublisher
from tests.support import Mosquitto

CFG = HealthConfig(pending_warn_after=30, stall_after=120, max_restarts=3, restart_window=600)


def work_order(n: int) -> OutboxItem:
    return OutboxItem(kind="work_order", channel="work-orders", key=f"wo{n}:1",
                      payload=json.dumps({"n": n}).encode(), priority="P0")


def codes(report: HealthReport) -> list[tuple[str, bool]]:
    return [(r.code, r.fatal) for r in report.reasons]


async def test_a_work_order_waiting_on_a_connected_idle_link_is_a_stall(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite3", targets={"mqtt": {"work-orders"}}, clock=fake_clock) as outbox:
        progress = DeliveryProgress(connected=True)
        progress.attempt(fake_clock.monotonic())
        model = HealthModel(CFG, fake_clock, Supervisor(fake_clock), outbox=outbox,
                            targets={"mqtt": progress},
                            journal=lambda: JournalStatus("j.sqlite3", True, None))
        assert model.report().status == "ok"
        await outbox.put(work_order(1))
        await fake_clock.advance(29)
        assert model.report().status == "ok"
        await fake_clock.advance(2)
        report = model.report()
        assert codes(report) == [("messages_waiting", False)] and not report.ok
        assert report.detail["targets"]["mqtt"]["pending"] == 1
        assert report.detail["targets"]["mqtt"]["oldest_pending_s"] == 31
        await fake_clock.advance(90)
        report = model.report()
        assert report.status == "failing" and codes(report) == [("stalled", True)]
        assert "1 message(s) for mqtt waiting up to 121 s" in report.summary()
        progress.attempt(fake_clock.monotonic())  # the publisher moves again
        assert model.report().status == "degraded"


async def test_a_link_that_is_down_or_backing_off_is_degraded_never_failing(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    targets = {"mqtt": {"work-orders"}, "http": {"work-orders"}}
    async with Outbox(tmp_path / "o.sqlite3", targets=targets, clock=fake_clock) as outbox:
        mqtt = DeliveryProgress(connected=False, last_error="connection refused")
        http = DeliveryProgress(last_error="HTTP 503: busy")
        model = HealthModel(CFG, fake_clock, Supervisor(fake_clock), outbox=outbox,
                            targets={"mqtt": mqtt, "http": http})
        await outbox.put(work_order(1))
        for _ in range(10):  # an hour's outage
            http.attempt(fake_clock.monotonic())
            http.waiting_until = fake_clock.monotonic() + 360  # a long Retry-After
            await fake_clock.advance(360)
            report = model.report()
            assert report.status == "degraded", report.summary()
        assert codes(report) == [("upstream_down", False), ("messages_waiting", False),
                                 ("upstream_down", False), ("messages_waiting", False)]
        assert "upstream mqtt not connected: connection refused" in report.summary()


async def test_a_critical_stage_in_a_crash_loop_is_failing(fake_clock: FakeClock) -> None:
    async def crashes() -> None:
        raise RuntimeError("bug")

    sup = Supervisor(fake_clock)
    model = HealthModel(CFG, fake_clock, sup)
    task = asyncio.create_task(sup.run("workorders", crashes, critical=True,
                                       backoff=Backoff(base=10, cap=10, jitter=0)))
    await fake_clock.advance(1)
    assert codes(model.report()) == [("stage_restarting", False)]
    await fake_clock.advance(20)  # third crash
    report = model.report()
    assert report.status == "failing" and codes(report) == [("stage_crash_loop", True)]
    assert "stage workorders restarted 3 times within 600 s" in report.summary()
    sup.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A stand-in for systemd's notification socket, with a 10 s watchdog."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_the_watchdog_is_fed_only_while_the_pipeline_moves(
        fake_clock: FakeClock, notify_socket: socket.socket, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    failures: list[HealthReport] = []
    async with Outbox(tmp_path / "o.sqlite3", targets={"mqtt": {"work-orders"}}, clock=fake_clock) as outbox:
        progress = DeliveryProgress(connected=True)
        progress.attempt(fake_clock.monotonic())
        model = HealthModel(CFG, fake_clock, Supervisor(fake_clock), outbox=outbox,
                            targets={"mqtt": progress})
        liveness = Liveness(model, fake_clock, on_failing=failures.append)
        assert liveness.interval == 5.0
        task = asyncio.create_task(liveness.run())
        await outbox.put(work_order(1))
        messages: list[str] = []

        async def advance(seconds: int) -> None:
            for _ in range(seconds):  # read as systemd would, before its queue fills
                await fake_clock.advance(1)
                messages.extend(received(notify_socket))

        await advance(100)
        assert messages.count("WATCHDOG=1") == 21  # at start, then every 5 s
        messages.clear()
        await advance(100)  # stalled from 120 s on
        assert messages.count("WATCHDOG=1") == 4  # 105, 110, 115, 120
        assert any(m.startswith("STATUS=failing: 1 message(s) for mqtt") for m in messages)
        assert len(failures) == 1 and failures[0].failing
        assert "health failing" in caplog.text and "CRITICAL" in caplog.text
        progress.attempt(fake_clock.monotonic())
        progress.delivered(fake_clock.monotonic())
        outbox.delivered("mqtt", await outbox.next("mqtt"))
        messages.clear()
        await advance(10)
        assert messages.count("WATCHDOG=1") == 2
        assert "health ok again" in caplog.text
        assert len(failures) == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.mosquitto
async def test_a_gateway_whose_upstream_stalls_exits_with_status_3(
        mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the send loop hangs while the link stays up (the shape of the defect
    the upstream broker drill found). The gateway must not carry on looking healthy."""

    async def stuck(self: UpstreamPublisher, client: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(UpstreamPublisher, "_send", stuck)
    config = load_config_text(f"""
site: {{id: s1, name: 测试, gateway_id: gw1}}
state_dir: {tmp_path}
brokers:
  platform: {{host: 127.0.0.1, port: {mosquitto.port}}}
upstream: {{broker: platform}}
health: {{pending_warn_after: 0.2, stall_after: 0.5, check_every: 0.1}}
""")
    gateway = Gateway(config)
    async with asyncio.timeout(20):
        run = asyncio.create_task(gateway.run(asyncio.Event().wait))
        await gateway.started.wait()
        assert gateway.outbox is not None
        await gateway.outbox.put(work_order(1))
        await run  # returns by itself
    assert gateway.exit_code == 3
    report = gateway.liveness.last
    assert report is not None and report.failing
    assert [r.code for r in report.reasons if r.fatal] == ["stalled"]
