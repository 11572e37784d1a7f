"""The alarm journal: real SQLite files, WAL, fsync for life safety, written before published,
off the event loop, bounded retention, failures, and restart through the whole engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.alarms import (
    AlarmEngine,
    AlarmEvent,
    AlarmJournal,
    AlarmState,
    JournalBatch,
    JournalState,
    LifecycleState,
    Transition,
    journal_path,
)
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.errors import JournalError
from gateway.model import Quality, Reading
from tests.test_alarm_lifecycle_rig import FORCED, HELD, TAMPER, TRAPPED, Rig


@pytest.fixture
async def rig(fake_clock: FakeClock, tmp_path: Path) -> AsyncIterator[Rig]:
    async with Rig(fake_clock, tmp_path / "alarms.sqlite3") as r:
        yield r


async def test_the_journal_is_sqlite_in_wal_mode(rig: Rig, tmp_path: Path) -> None:
    await rig.on(TRAPPED)
    with sqlite3.connect(tmp_path / "alarms.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}
    assert {"events", "alarms", "meta"} <= tables


async def test_life_safety_commits_are_fsynced_and_routine_ones_are_not(rig: Rig) -> None:
    async def synchronous() -> int:
        return int(await rig.journal.run(
            lambda c: c.execute("PRAGMA synchronous").fetchone()[0]))

    await rig.on(TAMPER)  # P3
    assert await synchronous() == 1  # NORMAL: survives a crash of the process
    await rig.on(TRAPPED)  # P0
    assert await synchronous() == 2  # FULL: the WAL is fsynced before the commit returns
    await rig.off(TAMPER)
    assert await synchronous() == 1
    await rig.actions.comment(TAMPER, actor="op", text="seen")
    assert await synchronous() == 2, "operator actions are fsynced too"


async def test_every_event_is_on_disk_before_it_is_published(fake_clock: FakeClock,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite3"
    seen: list[tuple[int, bool]] = []
    rig = Rig(fake_clock, path)

    async def sink(event: AlarmEvent) -> None:
        with sqlite3.connect(path) as conn:  # another connection: only committed data
            row = conn.execute("SELECT announced FROM events WHERE seq = ?",
                               (event.seq,)).fetchone()
        seen.append((event.seq, row is not None and bool(row[0])))

    rig.book._sink = sink
    async with rig:
        await rig.on(TRAPPED, HELD)
        await rig.off(HELD)
        await rig.actions.shelve(FORCED, actor="op", reason="x", duration=60)
        await rig.on(FORCED)
        await rig.advance(60)
    assert len(seen) == 4 and all(ok for _, ok in seen), seen


async def test_sqlite_runs_off_the_event_loop(rig: Rig, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    loop_thread = threading.get_ident()
    assert await rig.journal.run(lambda c: threading.get_ident()) != loop_thread

    slow = rig.journal._commit_sync

    def slow_commit(batch: JournalBatch, now: float) -> list[int]:
        time.sleep(0.2)  # a slow SD card
        return slow(batch, now)

    monkeypatch.setattr(rig.journal, "_commit_sync", slow_commit)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await rig.on(TRAPPED)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ticks >= 5, "the loop kept running while the commit waited for the disk"


async def test_retention_bounds_rows_and_age(fake_clock: FakeClock, tmp_path: Path) -> None:
    journal = AlarmJournal(tmp_path / "j.sqlite3", max_age=3600, max_rows=50, prune_every=10)
    rig = Rig(fake_clock, None)
    await journal.open(fake_clock.time())
    try:
        template = rig.detection(HELD)
        for i in range(200):
            event = AlarmEvent(**{f: getattr(template, f) for f in (
                "alarm_id", "rule_id", "device", "device_name", "category", "priority",
                "message_zh", "message_en", "location", "condition_since", "mono")},
                state=AlarmState.ACTIVE, ts=fake_clock.time() + i,
                transition=Transition.ACTIVATED, lifecycle=LifecycleState.ACTIVE_UNACK)
            await journal.commit(JournalBatch(events=[event]), fake_clock.time() + i)
        events = await journal.events()
        assert 50 <= len(events) < 60, "bounded by rows (pruned every 10 commits)"
        assert events[-1].ts == fake_clock.time() + 199
        deleted = await journal.prune(fake_clock.time() + 199 + 3600 - 10)
        assert deleted > 0
        assert [e.ts for e in await journal.events()] == [
            fake_clock.time() + i for i in range(189, 200)], "and by age"
    finally:
        await journal.close()


async def test_a_journal_from_a_newer_propgw_is_moved_aside_not_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    journal = AlarmJournal(path)
    await journal.open(0.0)
    try:
        assert journal.replaced is not None and journal.replaced.exists()
        assert journal.replaced.name.startswith("new.sqlite3.unreadable-")
        with contextlib.closing(sqlite3.connect(journal.replaced)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 99, "kept as it was"
        assert await journal.load() == JournalState(records=[], meta={})
    finally:
        await journal.close()
    assert "newer propgw" in caplog.text and str(journal.replaced) in caplog.text


async def test_a_failing_disk_never_silences_alarms_but_refuses_actions(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def full(batch: JournalBatch, now: float) -> list[int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(rig.journal, "_commit_sync", full)
    with caplog.at_level(logging.ERROR):
        await rig.on(TRAPPED)
    assert rig.said() == [("activated", "active")], "announced anyway"
    assert rig.announced[0].seq == 0
    assert "database or disk is full" in caplog.text
    with pytest.raises(JournalError, match="disk is full"):
        await rig.actions.acknowledge(TRAPPED, actor="op")
    assert rig.state(TRAPPED) is LifecycleState.ACTIVE_UNACK, "the refused action changed nothing"


async def test_actions_need_an_open_journal(fake_clock: FakeClock, tmp_path: Path) -> None:
    rig = Rig(fake_clock, tmp_path / "j.sqlite3")
    async with rig:
        await rig.on(HELD)
    with pytest.raises(JournalError, match="closed"):
        await rig.actions.acknowledge(HELD, actor="op")


def test_where_the_journal_lives() -> None:
    base = "site: {id: s1, name: n, gateway_id: gw1}\n"
    assert journal_path(load_config_text(base)) is None, "no state_dir: in memory"
    assert journal_path(load_config_text(base + "state_dir: /srv/pg\n")) == Path(
        "/srv/pg/alarms-s1-gw1.sqlite3")
    assert journal_path(load_config_text(
        base + "state_dir: /srv/pg\nalarms: {journal: {path: a.db}}\n")) == Path("/srv/pg/a.db")
    assert journal_path(load_config_text(
        base + "alarms: {journal: {path: /x/a.db}}\n")) == Path("/x/a.db")
    assert journal_path(load_config_text(
        base + "state_dir: /srv/pg\nalarms: {journal: {path: ':memory:'}}\n")) is None


ENGINE_SITE = """
site: {{id: s1, name: 测试, gateway_id: gw1}}
state_dir: {state}
devices:
  - {{id: E1, driver: modbus-tcp, host: 127.0.0.1, kind: elevator,
     points: [{{name: car_status, address: 0}}, {{name: door_status, address: 1}}]}}
rules:
  - id: trapped
    kind: elevator
    for: 30s
    when: {{all: [{{point: car_status, eq: 0}}, {{point: door_status, eq: 1}}]}}
    category: elevator_entrapment
    priority: P0
    message: {{zh: 困人, en: trapped}}
"""


async def test_engine_restart_restores_an_open_alarm_and_still_sees_it_end(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    config = load_config_text(ENGINE_SITE.format(state=tmp_path))
    announced: list[AlarmEvent] = []

    async def sink(event: AlarmEvent) -> None:
        announced.append(event)

    async def run_engine(*values: dict[str, int], wait: float) -> AlarmEngine:
        engine = AlarmEngine(config, fake_clock, sink)
        bus = Bus()
        feed = bus.subscribe("alarms")
        task = asyncio.create_task(engine.run(feed))

        async def settle() -> None:  # the journal opens, restores and commits on its thread
            for _ in range(20):
                await fake_clock.advance(0)
                await engine.journal.wait_idle()

        await settle()
        for batch in values:
            for point, value in batch.items():
                await bus.publish(Reading("E1", point, value, Quality.GOOD, fake_clock.time()))
        await settle()
        await fake_clock.advance(wait)
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return engine

    first = await run_engine({"car_status": 0, "door_status": 1}, wait=30)
    assert [(e.alarm_id, e.state) for e in announced] == [("trapped@E1", AlarmState.ACTIVE)]
    assert first.journal.path == tmp_path / "alarms-s1-gw1.sqlite3"
    assert not first.journal.is_open, "closed when the engine stopped"

    second = await run_engine({"door_status": 2}, wait=1)
    assert [(e.alarm_id, e.state) for e in announced] == [
        ("trapped@E1", AlarmState.ACTIVE), ("trapped@E1", AlarmState.CLEARED)], \
        "the restored alarm was handed back to rule evaluation, which saw it end"
    assert announced[1].incident_id == announced[0].incident_id
    assert second.active() == []


async def test_an_unusable_journal_file_does_not_stop_alarms(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    rig = Rig(fake_clock, tmp_path / "not-a-dir" / "alarms.sqlite3")
    with caplog.at_level(logging.ERROR):
        async with rig:
            await rig.on(TRAPPED)
            assert rig.book.journal.path is None
    assert rig.said() == [("activated", "active")]
    assert "running with an in-memory alarm journal" in caplog.text


async def test_what_a_full_disk_refused_is_journaled_once_it_recovers(
        fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The disk-full drill: the journal, writable again, never wrote the activations it had
    missed, so a restart took the still-active alarms for new incidents (second orders)."""
    path = tmp_path / "j.sqlite3"
    rig = Rig(fake_clock, path)
    async with rig:
        await rig.on(HELD)
        real = rig.journal._commit_sync

        def full(batch: JournalBatch, now: float) -> list[int]:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(rig.journal, "_commit_sync", full)
        with caplog.at_level(logging.WARNING):
            await rig.on(TRAPPED, FORCED)
            await rig.off(HELD)
            await rig.advance(12)  # retried twice meanwhile, still full
            assert rig.book.journal_error is not None
            monkeypatch.setattr(rig.journal, "_commit_sync", real)
            await rig.advance(5)  # the retry timer, with nothing else happening
        assert rig.book.journal_error is None
        assert rig.said() == [("activated", "active"), ("activated", "active"),
                              ("activated", "active"), ("returned_to_normal", "cleared")]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, "one ERROR per episode, not per attempt"
        assert "writable again; 3 alarm record(s) and 3 event(s)" in caplog.text
        incidents = {a: rig.record(a).incident_id for a in (TRAPPED, FORCED)}
    history = [e.transition for e in await reopen_events(path)]
    assert history == ["activated", "activated", "activated", "returned_to_normal"]
    again = Rig(fake_clock, path)
    async with again:
        assert again.announced == [], "nothing handed on twice after the restart"
        assert {a: again.record(a).incident_id for a in (TRAPPED, FORCED)} == incidents
        assert again.state(TRAPPED) is LifecycleState.ACTIVE_UNACK
        assert again.state(HELD) is LifecycleState.RTN_UNACK
        await again.on(TRAPPED)  # still trapped: the same incident, nothing new
        assert again.announced == []


async def reopen_events(path: Path) -> list[AlarmEvent]:
    journal = AlarmJournal(path)
    await journal.open(0.0)
    try:
        return await journal.events()
    finally:
        await journal.close()
