"""The outbox and the alarm journal on disk: private files, and never a dead end when a file
is damaged or the disk is full."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gateway.alarms import AlarmJournal
from gateway.clock import FakeClock
from gateway.outbox import Outbox, OutboxItem

TARGETS = {"mqtt": {"work-orders", "alarms"}}


def order(n: int, *, still_open: bool = True, size: int = 100) -> OutboxItem:
    body = json.dumps({"id": f"wo{n}", "seq": 1, "pad": "x" * size})
    return OutboxItem(kind="work_order", channel="work-orders", key=f"wo{n}:1",
                      payload=body.encode(), priority="P0",
                      snapshot=(f"wo{n}", body, still_open))


async def drain(outbox: Outbox) -> list[str]:
    keys = []
    while outbox.pending("mqtt"):
        env = await outbox.next("mqtt")
        keys.append(env.key)
        outbox.delivered("mqtt", env)
    await outbox.flush()
    return keys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_state_files_are_owner_only(tmp_path: Path, fake_clock: FakeClock) -> None:
    state = tmp_path / "state"
    old_umask = os.umask(0o022)  # what a shell would give; the files must not follow it
    try:
        async with Outbox(state / "o.sqlite3", targets=TARGETS, clock=fake_clock) as outbox:
            await outbox.put(order(1))
        journal = AlarmJournal(state / "j.sqlite3")
        await journal.open(fake_clock.time())
        await journal.close()
    finally:
        os.umask(old_umask)
    assert mode(state) == 0o700
    files = sorted(p.name for p in state.iterdir())
    assert "o.sqlite3" in files and "j.sqlite3" in files
    assert {p.name: mode(p) for p in state.iterdir()} == dict.fromkeys(files, 0o600)


async def test_an_existing_world_readable_file_is_made_private(tmp_path: Path,
                                                               fake_clock: FakeClock) -> None:
    path = tmp_path / "o.sqlite3"
    async with Outbox(path, targets=TARGETS, clock=fake_clock):
        pass
    path.chmod(0o644)
    async with Outbox(path, targets=TARGETS, clock=fake_clock):
        pass
    assert mode(path) == 0o600


@pytest.mark.parametrize("content", [b"not a database at all " * 100, b"SQLite format 3\x00" +
                                     b"\x17" * 4000, b""])
async def test_an_unreadable_outbox_is_moved_aside_and_a_fresh_durable_one_started(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture,
        content: bytes) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(content)
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        health = outbox.health()
        if not content:  # an empty file is a valid, empty database: nothing to replace
            assert health.replaced is None
        else:
            assert health.replaced is not None and health.durable and health.ok
            moved = Path(health.replaced)
            assert moved.read_bytes() == content, "kept as it was"  # noqa: ASYNC240 (test file)
            assert moved.name.startswith("o.sqlite3.unreadable-")
            assert any(r.levelno == logging.CRITICAL and str(moved) in r.message
                       for r in caplog.records)
        env = await outbox.put(order(1))
        assert env is not None and env.durable
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        assert await drain(outbox) == ["wo1:1"], "the fresh file is durable"


async def test_what_can_still_be_read_from_a_damaged_outbox_is_carried_over(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "o.sqlite3"
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        for n in range(5):
            await outbox.put(order(n))
        assert await drain_some(outbox, 2) == ["wo0:1", "wo1:1"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master "
                            "WHERE name = 'sqlite_autoindex_snapshot_1'").fetchone()[0]
    with path.open("r+b") as f:  # damage the snapshot table's index: the rows stay readable
        f.seek((root - 1) * page)
        f.write(b"\xff" * 64)
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        assert outbox.health().replaced is not None
        assert sorted(json.loads(s)["id"] for s in outbox.snapshots) == [
            f"wo{n}" for n in range(5)]
        assert await drain_some(outbox, 1) == ["wo2:1"]
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        assert outbox.health().replaced is None
        assert await drain(outbox) == ["wo3:1", "wo4:1"], "carried over, durable, not twice"
        assert len(outbox.snapshots) == 5


async def drain_some(outbox: Outbox, n: int) -> list[str]:
    keys = []
    for _ in range(n):
        env = await outbox.next("mqtt")
        keys.append(env.key)
        outbox.delivered("mqtt", env)
    await outbox.flush()
    return keys


async def test_a_full_disk_is_one_failure_not_a_flapping_pair_per_message(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Confirmations free space and succeed on a full disk; they used to clear the storage
    error until the next insert failed: CRITICAL / "works again" for every message."""
    path = tmp_path / "o.sqlite3"
    async with Outbox(path, targets=TARGETS, clock=fake_clock,
                      max_file_bytes=48 * 1024) as outbox:
        n = 0
        while not caplog.records:  # open orders' snapshots fill the file until CRITICAL
            await outbox.put(order(n, size=3000))
            await drain(outbox)
            n += 1
            assert n < 40
        for k in range(n, n + 20):  # each one delivered at once while the disk stays full
            await outbox.put(order(k, size=3000))
            assert await drain(outbox) == [f"wo{k}:1"]
            assert outbox.health().storage_error is not None
        lines = [r for r in caplog.records if r.name == "gateway.outbox._outbox"]
        assert [r.levelno for r in lines] == [logging.CRITICAL], [r.message for r in lines]


async def test_work_order_snapshots_refused_by_a_full_disk_are_written_once_it_recovers(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The restart after a full disk must find every open order, even those delivered while
    nothing could be written: otherwise their still-active alarms open second orders."""
    path = tmp_path / "o.sqlite3"
    async with Outbox(path, targets=TARGETS, clock=fake_clock,
                      max_file_bytes=48 * 1024) as outbox:
        full_from = 0
        while outbox.health().storage_error is None:
            await outbox.put(order(full_from, size=2000))
            full_from += 1
            assert full_from < 40
        late = list(range(full_from, full_from + 3))
        for n in late:  # raised and delivered upstream while the disk is full
            await outbox.put(order(n, size=100))
        while outbox.pending("mqtt"):
            outbox.delivered("mqtt", await outbox.next("mqtt"))
        await outbox.flush()
        await fake_clock.advance(6)  # the storage retry
        await outbox.flush()
        assert outbox.health().storage_error is None
    assert "storage works again" in caplog.text
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        ids = sorted(int(json.loads(s)["id"][2:]) for s in outbox.snapshots)
        assert ids == list(range(full_from + 3)), "every open order is known after a restart"
        assert outbox.pending("mqtt") == 0, "and nothing is sent twice"
