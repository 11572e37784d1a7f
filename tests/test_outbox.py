"""Outbox on real SQLite files: order, durability across restarts, bounds, parking, disk full."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.outbox import Envelope, Outbox, OutboxItem

TARGETS = {"mqtt": {"work-orders", "alarms", "telemetry"}}


def order(n: int, priority: str = "P1", size: int = 10) -> OutboxItem:
    return OutboxItem(kind="work_order", channel="work-orders", key=f"wo{n}:1",
                      payload=b"x" * size, priority=priority,
                      snapshot=(f"wo{n}", f'{{"n": {n}}}', True))


def telemetry(n: int, size: int = 10) -> OutboxItem:
    return OutboxItem(kind="telemetry", channel="telemetry", key=f"t{n}", payload=b"t" * size)


def alarm(n: int, priority: str) -> OutboxItem:
    return OutboxItem(kind="alarm", channel="alarms", key=f"a{n}", payload=b"a",
                      priority=priority)


async def drain(outbox: Outbox, target: str = "mqtt") -> list[str]:
    keys: list[str] = []
    while outbox.pending(target):
        env = await outbox.next(target)
        keys.append(env.key)
        outbox.delivered(target, env)
    return keys


async def test_highest_priority_first_then_oldest(tmp_path: Path, fake_clock: FakeClock) -> None:
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        for n, prio in enumerate(["P2", "P3", "P0", "P1", "P0"]):
            await outbox.put(order(n, prio))
        await outbox.put(telemetry(9))
        await outbox.put(alarm(8, "P0"))
        assert await drain(outbox) == ["wo2:1", "wo4:1", "a8", "wo3:1", "wo0:1", "wo1:1", "t9"]


async def test_a_key_already_queued_is_not_queued_twice(tmp_path: Path,
                                                        fake_clock: FakeClock) -> None:
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        first = await outbox.put(alarm(1, "P1"))
        again = await outbox.put(alarm(1, "P1"))
        assert first is again
        assert await drain(outbox) == ["a1"]
        assert await outbox.put(alarm(1, "P1")) is not first, "once delivered, sent again"


async def test_next_waits_and_a_more_urgent_message_overtakes(tmp_path: Path,
                                                              fake_clock: FakeClock) -> None:
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        waiter = asyncio.create_task(outbox.next("mqtt"))
        await asyncio.sleep(0)
        assert not waiter.done()
        await outbox.put(order(1, "P2"))
        first = await asyncio.wait_for(waiter, 1)
        assert first.key == "wo1:1"
        await outbox.put(order(2, "P0"))
        # Not confirmed yet, so asking again gives the most urgent message now queued.
        assert (await outbox.next("mqtt")).key == "wo2:1"


async def test_unsent_messages_and_open_orders_survive_a_restart(tmp_path: Path,
                                                                 fake_clock: FakeClock) -> None:
    path = tmp_path / "state" / "o.db"
    targets = {"mqtt": {"work-orders"}, "http": {"work-orders"}}
    async with Outbox(path, targets=targets, clock=fake_clock) as outbox:
        for n, prio in enumerate(["P1", "P0", "P1"]):
            env = await outbox.put(order(n, prio))
            assert env is not None and env.durable
        outbox.delivered("mqtt", await outbox.next("mqtt"))  # wo1 reached the broker
        outbox.delivered("http", await outbox.next("http"))
        outbox.delivered("http", await outbox.next("http"))  # wo1, wo0 reached HTTP
        await outbox.put(OutboxItem(kind="work_order", channel="work-orders", key="wo0:2",
                                    payload=b"closed", snapshot=("wo0", "{}", False)))
    async with Outbox(path, targets=targets, clock=fake_clock) as again:
        assert await drain(again, "mqtt") == ["wo0:1", "wo2:1", "wo0:2"]
        assert await drain(again, "http") == ["wo2:1", "wo0:2"]
        assert again.snapshots == ['{"n": 1}', '{"n": 2}'], "closed orders are not restored"
    async with Outbox(path, targets=targets, clock=fake_clock) as third:
        assert third.pending("mqtt") == third.pending("http") == 0


async def test_a_target_removed_from_the_config_drops_its_deliveries(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, targets={"mqtt": {"work-orders"}, "http": {"work-orders"}},
                      clock=fake_clock) as outbox:
        await outbox.put(order(1))
    async with Outbox(path, targets={"mqtt": {"work-orders"}}, clock=fake_clock) as outbox:
        assert await drain(outbox) == ["wo1:1"]
    async with Outbox(path, targets={"mqtt": {"work-orders"}, "http": {"work-orders"}},
                      clock=fake_clock) as outbox:
        assert outbox.health().pending == {"mqtt": 0, "http": 0}


async def test_full_outbox_sheds_telemetry_then_minor_alarms_never_work_orders(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, targets=TARGETS, clock=fake_clock, max_messages=5) as outbox:
        for n in range(3):
            await outbox.put(telemetry(n))
        await outbox.put(alarm(1, "P3"))
        await outbox.put(alarm(2, "P0"))
        await outbox.put(order(1))  # sheds the oldest telemetry
        await outbox.put(telemetry(3))  # sheds telemetry 1 (oldest of its kind)
        await outbox.put(order(2))  # sheds telemetry 2
        await outbox.put(order(3))  # sheds telemetry 3
        await outbox.put(order(4))  # sheds the P3 alarm
        assert await outbox.put(telemetry(4)) is None, "nothing less valuable left to shed"
        await outbox.put(order(5))  # over the bound, accepted all the same
        health = outbox.health()
        assert health.shed == 6 and health.over_bound
        assert [r.message for r in caplog.records if "shedding" in r.message] != []
        assert sum("shedding" in r.message for r in caplog.records) == 1, "logged once"
    async with Outbox(path, targets=TARGETS, clock=fake_clock, max_messages=5) as outbox:
        assert await drain(outbox) == ["a2", "wo1:1", "wo2:1", "wo3:1", "wo4:1", "wo5:1"]


async def test_byte_bound_sheds_too(tmp_path: Path, fake_clock: FakeClock) -> None:
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock,
                      max_bytes=1000) as outbox:
        for n in range(5):
            await outbox.put(telemetry(n, size=300))
        assert outbox.health().shed == 2
        assert await drain(outbox) == ["t2", "t3", "t4"]


async def test_parked_messages_stay_visible_across_restarts_until_retried(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "o.db"
    targets = {"http": {"work-orders"}}
    async with Outbox(path, targets=targets, clock=fake_clock) as outbox:
        await outbox.put(order(1, "P0"))
        await outbox.put(order(2, "P1"))
        outbox.park("http", await outbox.next("http"), "HTTP 400: bad request")
        assert (await outbox.next("http")).key == "wo2:1"
        assert outbox.health().parked == {"http": 1}
    async with Outbox(path, targets=targets, clock=fake_clock) as outbox:
        assert [(e.key, why) for e, why in outbox.parked("http")] == [
            ("wo1:1", "HTTP 400: bad request")]
        assert await drain(outbox, "http") == ["wo2:1"]
        assert outbox.retry_parked("http") == 1
        assert await drain(outbox, "http") == ["wo1:1"]
        assert outbox.health().parked == {"http": 0}


async def test_disk_full_is_loud_keeps_delivering_and_recovers(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.db"
    # SQLite's max_page_count makes writes fail exactly as on a full disk (SQLITE_FULL).
    async with Outbox(path, targets=TARGETS, clock=fake_clock,
                      max_file_bytes=64 * 1024) as outbox:
        stored: list[Envelope] = []
        for n in range(40):
            env = await outbox.put(order(n, "P0", size=3000))
            assert env is not None
            stored.append(env)
        health = outbox.health()
        assert health.storage_error is not None and "full" in health.storage_error
        assert not health.ok and not stored[-1].durable and stored[0].durable
        critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(critical) == 1, "loud, but once per failure"
        # Nothing is lost while the disk is full: every order is still delivered.
        keys = []
        for _ in range(36):
            env = await outbox.next("mqtt")
            keys.append(env.key)
            outbox.delivered("mqtt", env)
        assert keys == [f"wo{n}:1" for n in range(36)]
        await outbox.flush()
        # Delivered rows were deleted, so there is room again: the rest is written now.
        assert outbox.health().storage_error is None
        assert all(e.durable for e in stored[36:])
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        assert await drain(outbox) == [f"wo{n}:1" for n in range(36, 40)]


async def test_an_unusable_file_falls_back_to_memory_loudly(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "o.db").mkdir()  # a directory where the file should be
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        assert not outbox.health().durable
        env = await outbox.put(order(1, "P0"))
        assert env is not None and not env.durable
        assert await drain(outbox) == ["wo1:1"]
    assert any(r.levelno == logging.CRITICAL and "IN MEMORY" in r.message
               for r in caplog.records)


async def test_a_second_gateway_cannot_share_the_file(tmp_path: Path,
                                                      fake_clock: FakeClock) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as first:
        await first.put(order(1))
        async with Outbox(path, targets=TARGETS, clock=fake_clock) as second:
            assert not second.health().durable, "locked by the first: memory only"
            assert second.pending("mqtt") == 0, "and it does not send the first one's messages"


async def test_the_file_is_wal_and_life_safety_commits_are_synchronous_full(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        await outbox.put(order(1, "P0"))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT key FROM message").fetchall() == [("wo1:1",)]
    finally:
        conn.close()


async def test_put_needs_an_open_outbox(tmp_path: Path, fake_clock: FakeClock) -> None:
    outbox = Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock)
    with pytest.raises(RuntimeError, match="not open"):
        await outbox.put(order(1))
    with pytest.raises(ValueError, match="at least one target"):
        Outbox(None, targets={}, clock=fake_clock)


async def test_an_open_cancelled_midway_leaves_no_connection_behind(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    """A gateway stopped while its outbox is still opening (a slow SD card) must not leave the
    SQLite file open behind the outbox: the store is closed once its thread has finished."""
    outbox = Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock)
    store = outbox._store
    opening, release = threading.Event(), threading.Event()
    real_open = store.open

    def slow_open(**kwargs: Any) -> Any:
        opening.set()
        release.wait(10)
        return real_open(**kwargs)

    store.open = slow_open  # type: ignore[method-assign]
    task = asyncio.create_task(outbox.__aenter__())
    await asyncio.to_thread(opening.wait, 10)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store._conn is None, "the store opened for a cancelled outbox was closed"
