"""SIGHUP reloads `propgw run`'s config: a real process, a real device broker, a real HTTP
platform that refuses the work order until the end, so the order is queued throughout."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.drill_support import (
    HttpPlatform,
    gateway,
    http_upstream,
    set_trapped,
    site_config,
)
from tests.support import Mosquitto, free_port

WATCH = """\
  - {id: watch, kind: elevator, when: {point: trapped, ge: 1}, category: equipment_fault,
     priority: P3, work_order: false, message: {zh: 注意, en: look}}
"""


@contextlib.asynccontextmanager
async def systemd_notify_socket(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    """An sd_notify socket (abstract, so no path length limit) whose messages are kept."""
    name = f"propgw-test-reload-{os.getpid()}-{free_port()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    messages: list[str] = []

    async def read() -> None:
        loop = asyncio.get_running_loop()
        while True:
            messages.append((await loop.sock_recv(sock, 4096)).decode())

    task = asyncio.create_task(read(), name="sd_notify")
    try:
        yield messages
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


@pytest.mark.slow
@pytest.mark.mosquitto
async def test_sighup_reloads_without_losing_alarms_or_queued_work_orders(
        mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = HttpPlatform(failing=True)
    await platform.start()
    try:
        await _reloads(platform, mosquitto, tmp_path, monkeypatch)
    finally:
        await platform.stop()


async def _reloads(platform: HttpPlatform, mosquitto: Mosquitto, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    status_port = free_port()
    three_cars = site_config(tmp_path, devices_port=mosquitto.port, elevators=3,
                             upstream=http_upstream(platform.port), status_port=status_port
                             ).read_text(encoding="utf-8")
    config = site_config(tmp_path, devices_port=mosquitto.port, elevators=2,
                         upstream=http_upstream(platform.port), status_port=status_port)
    original = config.read_text(encoding="utf-8")
    async with systemd_notify_socket(monkeypatch) as notified, \
            gateway(config, start=True) as gw:
        await gw.wait_for(" running: ")
        await set_trapped(mosquitto.port, {1: 1, 2: 3})
        await gw.wait_for(r"alarm P0 trapped on E1")
        async with asyncio.timeout(20):
            while not platform.requests:  # the order is queued: refused (503), retried
                await asyncio.sleep(0.02)

        # A broken file: logged with file and key, the gateway runs on with the old config.
        config.write_text(original.replace("priority: P0", "priority: P9"), encoding="utf-8")
        gw.send_signal(signal.SIGHUP)
        await gw.wait_for(r"config reload refused: .*site\.yaml: rules\[0\]\.priority")
        await gw.wait_for(r"config reload refused: .*site\.yaml has 1 problem\(s\); the running "
                          r"config stays")

        # A setting only a restart applies: refused as a whole, naming the key.
        config.write_text(original.replace("name: 演练小区", "name: 新名字"), encoding="utf-8")
        gw.send_signal(signal.SIGHUP)
        await gw.wait_for(r"config reload refused: .* changes site\.name, which only a restart")

        # A valid change: the threshold (eq 1 -> ge 1) and a new rule take effect on the
        # last readings at once; the E1 entrapment stays one alarm with one order.
        config.write_text(original.replace("eq: 1}", "ge: 1}") + WATCH, encoding="utf-8")
        gw.send_signal(signal.SIGHUP)
        await gw.wait_for(r"config reloaded: 2 device\(s\), 2 rule\(s\); 1 device link\(s\) "
                          r"kept, 0 stopped, 0 started")
        await gw.wait_for(r"alarm P0 trapped on E2")
        await gw.wait_for(r"alarm P3 watch on E1")
        await gw.wait_for(r"alarm P3 watch on E2")

        # A third car, then repeated SIGHUPs: they coalesce; the device link is replaced once
        # (the new car is read) and the gateway still detects.
        config.write_text(three_cars.replace("eq: 1}", "ge: 1}") + WATCH, encoding="utf-8")
        for _ in range(3):
            gw.send_signal(signal.SIGHUP)
        await gw.wait_for(r"config reloaded: 3 device\(s\), 2 rule\(s\); 0 device link\(s\) "
                          r"kept, 1 stopped, 1 started")
        await set_trapped(mosquitto.port, {1: 0, 3: 1})
        await gw.wait_for(r"alarm P0 trapped on E3")
        await gw.wait_for(r"alarm trapped on E1 returned to normal")

        platform.failing = False
        async with asyncio.timeout(20):
            while {(o["alarm_id"], o["seq"]) for o in platform.orders()} < {
                    ("trapped@E1", 1), ("trapped@E1", 2), ("trapped@E2", 1), ("trapped@E3", 1)}:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        assert await gw.stop() == 0

    delivered = [(o["alarm_id"], o["id"], o["seq"]) for o in platform.orders()]
    assert len(delivered) == len(set(delivered)) == 4, delivered
    ids = collections.defaultdict(set)
    for alarm, order_id, _ in delivered:
        ids[alarm].add(order_id)
    assert {a: len(i) for a, i in ids.items()} == {"trapped@E1": 1, "trapped@E2": 1,
                                                    "trapped@E3": 1}
    assert gw.count(r"alarm P0 trapped on E1") == 1, "raised once, through every reload"
    assert gw.count(r"config reload refused") >= 3
    assert "Traceback" not in gw.text, gw.text[-4000:]

    reloading = [i for i, m in enumerate(notified) if m.startswith("RELOADING=1\n")]
    assert len(reloading) >= 4 and all("MONOTONIC_USEC=" in notified[i] for i in reloading)
    assert all("READY=1" in notified[i + 1:] for i in reloading), notified
