"""Fault drills on the gateway's own disk: a full filesystem and its recovery, then a restart;
damaged outbox and journal files at start-up. No work order lost, none raised twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drill_support import (
    gateway,
    mqtt_platform,
    mqtt_upstream,
    outbox_file,
    reasons,
    set_trapped,
    site_config,
    tally,
)
from tests.support import Mosquitto, free_port
from tests.test_drill_upstream import all_clear, brokers, wait_orders

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.drill]


def _mount_tmpfs(where: Path, size: str) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, check=False).returncode == 0


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        if not _mount_tmpfs(Path(d), "1m"):
            return False
        subprocess.run(["umount", d], check=False)
    return True


NEEDS_MOUNT = pytest.mark.skipif(
    not _can_mount(), reason="needs root and tmpfs mounts for a small real filesystem to fill "
                             "(CI runs as root; elsewhere: sudo scripts/test.sh)")


@contextlib.contextmanager
def small_disk(where: Path, size: str = "3m") -> Iterator[Path]:
    where.mkdir()
    assert _mount_tmpfs(where, size)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full (to the last block)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


@NEEDS_MOUNT
async def test_drill_disk_full_then_recovery_then_a_restart(tmp_path: Path) -> None:
    devices, upstream = brokers(tmp_path)
    status_port = free_port()
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        config = site_config(tmp_path, devices_port=devices.port, elevators=4,
                             upstream=mqtt_upstream(upstream.port), status_port=status_port,
                             state_dir=state)
        with devices.running(), upstream.running():
            async with mqtt_platform(upstream.port) as platform, \
                    gateway(config, status_port) as gw:
                await gw.start()
                await set_trapped(devices.port, {1: 1})
                await wait_orders(platform, {("trapped@E1", 1)})

                filler = await asyncio.to_thread(fill, disk)
                await set_trapped(devices.port, {2: 1, 3: 1, 1: 0})
                # Raised, delivered from memory, and said loudly.
                await wait_orders(platform, {("trapped@E1", 2)}, alarms=3)
                during = await gw.wait_health(
                    lambda h: {"storage_error", "journal_error"} <= reasons(h))
                honest = during["status"] == "degraded"
                await set_trapped(devices.port, {4: 1})
                await wait_orders(platform, alarms=4)
                await asyncio.sleep(6)  # a storage retry or two while still full
                outbox_lines = gw.count(r"CRITICAL.*outbox: cannot write")
                journal_lines = gw.count(r"ERROR.*alarm journal .* full")
                assert (outbox_lines, journal_lines) == (1, 1), "once per episode, no flapping"

                filler.unlink()
                await gw.wait_for(r"outbox: storage works again", deadline=15)
                await gw.wait_for(r"alarm journal .* writable again; \d+ alarm record", deadline=15)
                after = await gw.wait_health(lambda h: all_clear(h, "mqtt"))
                honest = honest and after["reasons"] == []

                await gw.kill()  # and a restart: nothing raised again, nothing lost
                await gw.start()
                await gw.wait_for(r"restored 4 alarm")
                await gw.wait_health(lambda h: all_clear(h, "mqtt"))
                await asyncio.sleep(1)  # an order raised again would arrive by now
                assert await gw.stop() == 0
        row = tally("disk full (3 MiB tmpfs), recovery, SIGKILL and restart",
                    orders=platform.orders(), alarms=[f"trapped@E{n}" for n in range(1, 5)],
                    state_dir=state, log=gw.text, health_honest=honest)
    assert (row.lost, row.duplicated, row.second_orders, row.tracebacks, row.health_honest) \
        == (0, 0, 0, 0, True)


GARBAGE = b"this is not an SQLite database; the SD card tore it\n" * 200


def corrupt(state: Path, how: str) -> None:
    journal = state / "alarms-drill-gw1.sqlite3"
    outbox = outbox_file(state)
    for target in {"journal-garbage": [journal], "outbox-garbage": [outbox],
                   "outbox-damaged": []}[how]:
        for sidecar in ("-wal", "-shm"):
            target.with_name(target.name + sidecar).unlink(missing_ok=True)
        target.write_bytes(GARBAGE)
    if how == "outbox-damaged":  # a damaged index page: the rows can still be read
        import sqlite3

        with contextlib.closing(sqlite3.connect(outbox)) as conn:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            root = conn.execute("SELECT rootpage FROM sqlite_master "
                                "WHERE name = 'sqlite_autoindex_snapshot_1'").fetchone()[0]
        with outbox.open("r+b") as f:
            f.seek((root - 1) * page)
            f.write(b"\xff" * 64)


@pytest.mark.parametrize("how", ["journal-garbage", "outbox-garbage", "outbox-damaged"])
async def test_drill_damaged_state_file_at_start(tmp_path: Path, how: str) -> None:
    devices, upstream = brokers(tmp_path)
    status_port = free_port()
    state = tmp_path / "state"
    config = site_config(tmp_path, devices_port=devices.port, elevators=3,
                         upstream=mqtt_upstream(upstream.port), status_port=status_port)
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port) as platform, \
                gateway(config, status_port) as gw:
            await gw.start()
            await set_trapped(devices.port, {1: 1, 2: 1})
            await wait_orders(platform, alarms=2)
            await gw.wait_health(lambda h: all_clear(h, "mqtt"))
            assert await gw.stop() == 0
            await asyncio.to_thread(corrupt, state, how)

            await gw.start()
            await gw.wait_for(r"CRITICAL .* cannot be read .* moved to")
            during = await gw.wait_health(lambda h: "state_replaced" in reasons(h))
            honest = during["status"] == "degraded"
            await set_trapped(devices.port, {3: 1})
            await gw.wait_for(r"work order \S+ raised")
            await gw.kill()  # the fresh file must already be durable
            await gw.start()
            await wait_orders(platform, alarms=3)
            after = await gw.wait_health(lambda h: all_clear(h, "mqtt"))
            honest = honest and after["reasons"] == []
            await asyncio.sleep(1)  # an order raised again would arrive by now
            assert await gw.stop() == 0
    row = tally(f"{how} at start (moved aside, fresh file), then SIGKILL",
                orders=platform.orders(), alarms=[f"trapped@E{n}" for n in range(1, 4)],
                state_dir=state, log=gw.text, health_honest=honest)
    assert (row.lost, row.second_orders, row.tracebacks, row.health_honest) == (0, 0, 0, True)
    assert row.duplicated is not None and row.duplicated <= 1, \
        "at most the order in flight at the kill"
    assert len(list(state.glob("*.unreadable-*"))) >= 1, "the bad file is kept"


async def test_drill_device_broker_restarted_and_killed(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "up").mkdir()
    devices = Mosquitto(tmp_path / "dev", persistent=True)
    upstream = Mosquitto(tmp_path / "up", persistent=True)
    status_port = free_port()
    config = site_config(tmp_path, devices_port=devices.port, elevators=3,
                         upstream=mqtt_upstream(upstream.port), status_port=status_port)
    honest = True
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port) as platform, \
                gateway(config, status_port) as gw:
            await gw.start()
            await set_trapped(devices.port, {1: 1, 2: 0, 3: 0})
            await wait_orders(platform, {("trapped@E1", 1)})
            for k, stop in enumerate([devices.stop, devices.kill]):
                stop()
                during = await gw.wait_health(lambda h: "comm_loss" in reasons(h))
                honest = honest and during["status"] == "degraded"
                await asyncio.sleep(1)
                devices.start()
                await gw.wait_for(r"mqtt\[devices\]: connected again", count=k + 1,
                                  this_run=False)
                await set_trapped(devices.port, {k + 2: 1})
                await wait_orders(platform, alarms=k + 2)
            after = await gw.wait_health(lambda h: all_clear(h, "mqtt"))
            honest = honest and after["reasons"] == []
            await asyncio.sleep(1)  # a spurious order would arrive by now
            assert await gw.stop() == 0
    orders = platform.orders()
    row = tally("device broker stopped, then SIGKILLed, during an open entrapment",
                orders=orders, alarms=[f"trapped@E{n}" for n in range(1, 4)],
                state_dir=tmp_path / "state", log=gw.text, health_honest=honest, tried=2)
    assert (row.lost, row.duplicated, row.second_orders, row.tracebacks, row.health_honest) \
        == (0, 0, 0, 0, True)
    assert [(o["alarm_id"], o["seq"]) for o in orders if o["alarm_id"] == "trapped@E1"] == [
        ("trapped@E1", 1)], "a broker outage is not the end of the entrapment"
