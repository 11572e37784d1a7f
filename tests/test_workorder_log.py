"""The work-order history: real SQLite files, whole timelines from a real desk, restarts,
damaged files, a full disk that never blocks the desk, and retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.errors import WorkOrderLogError
from gateway.workorders import (
    Bilingual,
    SlaBreach,
    StatusAnswer,
    WorkOrder,
    WorkOrderDesk,
    WorkOrderLocation,
    WorkOrderLog,
    work_order_log_path,
)
from tests.test_escalation import MIN, SITE, event, walk

DAY = 86400.0
FULL = "database or disk is full"


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def order(order_id: str, seq: int = 1, *, at: float, status: str = "open",
          event: str = "raised", category: str = "elevator_entrapment",
          breached: bool = False, raised: float | None = None) -> WorkOrder:
    raised = at if raised is None else raised
    breaches = [SlaBreach(window="acknowledge", due=iso(raised + 60), at=iso(at),
                          late_by_s=max(0.0, at - raised - 60))] if breached else []
    return WorkOrder.model_validate({
        "id": order_id, "seq": seq, "site_id": "s1", "gateway_id": "gw1",
        "alarm_id": f"{category}@E1", "rule_id": category, "category": category,
        "priority": "P0", "status": status, "event": event,
        "title": Bilingual(zh="困人", en="Trapped"), "description": Bilingual(zh="困", en="t"),
        "location": WorkOrderLocation(site="s1", device="E1", device_name="1号梯"),
        "evidence": {}, "detected_at": iso(raised), "raised_at": iso(raised),
        "respond_by": iso(raised + 300), "breaches": breaches, "updated_at": iso(at)})


def trail(orders: list[WorkOrder]) -> list[tuple[int, str, str]]:
    return [(o.seq, o.event, o.status) for o in orders]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 2 s of real time) for the log's worker thread to get somewhere."""
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def wolog(fake_clock: FakeClock, tmp_path: Path) -> AsyncIterator[WorkOrderLog]:
    async with WorkOrderLog(tmp_path / "state" / "wo.sqlite3", clock=fake_clock) as log:
        yield log


async def test_a_desks_whole_timeline_is_kept_and_survives_a_restart(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "state" / "wo.sqlite3"
    async with WorkOrderLog(path, clock=fake_clock) as log:
        desk = WorkOrderDesk(SITE, fake_clock, log.record)
        task = asyncio.create_task(desk.run(), name="desk")
        try:
            first = await desk.handle(event(fake_clock))
            assert first is not None
            await walk(fake_clock, 6 * MIN)  # up to engineering, unanswered
            await desk.apply_status(first.id, StatusAnswer(status="acknowledged", by="李四"))
            await walk(fake_clock, 2 * MIN)
            await desk.apply_status(first.id, StatusAnswer(status="on_site"))
            await walk(fake_clock, 20 * MIN)  # pre-alerts at 15 and 25 min: the window
            await desk.apply_status(first.id, StatusAnswer(status="resolved"))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        expected = [(1, "raised", "open"), (2, "escalated", "open"),
                    (3, "escalated", "open"), (4, "acknowledged", "acknowledged"),
                    (5, "on_site", "on_site"), (6, "pre_alert", "on_site"),
                    (7, "pre_alert", "on_site"), (8, "resolved", "resolved")]
        assert await log.flush()
        history = await log.get(first.id)
        assert history is not None and trail(history.versions) == expected
        assert [v.escalation.level for v in history.versions[:3] if v.escalation] == [1, 2, 3]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    async with WorkOrderLog(path, clock=fake_clock) as again:
        history = await again.get(first.id)
        assert history is not None and trail(history.versions) == expected
        latest = history.latest
        assert latest.status == "resolved" and latest.acknowledged_at is not None
        assert [b.window for b in latest.breaches] == ["acknowledge", "on_site"]
        assert [o.id for o in await again.recent()] == [first.id]
        assert await again.count_open() == 0
        assert await again.recent(breached=False) == []
        assert again.health().ok and again.health().pending == 0


async def test_versions_recorded_just_before_closing_are_written(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "wo.sqlite3"
    async with WorkOrderLog(path, clock=fake_clock) as log:
        for n in range(3):
            await log.record(order(f"o{n}", at=fake_clock.time() + n))
    async with WorkOrderLog(path, clock=fake_clock) as again:
        assert [o.id for o in await again.recent()] == ["o2", "o1", "o0"]


async def test_recent_gives_the_latest_version_of_each_order_newest_first(
        wolog: WorkOrderLog, fake_clock: FakeClock) -> None:
    t0 = fake_clock.time()
    await wolog.record(order("a", at=t0))
    await wolog.record(order("b", at=t0 + 10, category="fire_alarm"))
    await wolog.record(order("c", at=t0 + 20))
    await wolog.record(order("a", 2, at=t0 + 30, status="acknowledged", event="acknowledged",
                             breached=True, raised=t0))
    await wolog.record(order("c", 2, at=t0 + 40, status="resolved", event="resolved",
                             raised=t0 + 20))

    async def ids(**kw: Any) -> list[tuple[str, int]]:
        return [(o.id, o.seq) for o in await wolog.recent(**kw)]

    # Before and after the writer has run: the same answers.
    for _ in range(2):
        assert await ids() == [("c", 2), ("a", 2), ("b", 1)]
        assert await ids(limit=2) == [("c", 2), ("a", 2)]
        assert await ids(since=t0 + 25) == [("c", 2), ("a", 2)]
        assert await ids(status="open") == [("b", 1)]
        assert await ids(status=["open", "acknowledged"]) == [("a", 2), ("b", 1)]
        assert await ids(category="fire_alarm") == [("b", 1)]
        assert await ids(closed=True) == [("c", 2)]
        assert await ids(closed=False) == [("a", 2), ("b", 1)]
        assert await ids(breached=True) == [("a", 2)]
        assert await ids(status="open", category="elevator_entrapment") == []
        assert await wolog.count_open() == 2
        history = await wolog.get("a")
        assert history is not None and [v.seq for v in history.versions] == [1, 2]
        assert history.latest.breaches[0].window == "acknowledge"
        assert await wolog.get("nope") is None
        assert await wolog.flush()
    with pytest.raises(ValueError, match="limit"):
        await wolog.recent(0)


async def test_an_update_recorded_twice_or_out_of_order_keeps_the_highest_seq(
        wolog: WorkOrderLog, fake_clock: FakeClock) -> None:
    t0 = fake_clock.time()
    await wolog.record(order("a", 2, at=t0 + 5, status="acknowledged", raised=t0))
    await wolog.flush()
    # The same incident replayed after a restart: seq 1 again, then 2 again.
    await wolog.record(order("a", 1, at=t0))
    assert [(o.seq, o.status) for o in await wolog.recent()] == [(2, "acknowledged")]
    assert await wolog.count_open() == 1
    await wolog.flush()
    await wolog.record(order("a", 2, at=t0 + 5, status="acknowledged", raised=t0))
    assert await wolog.flush()
    history = await wolog.get("a")
    assert history is not None and [v.seq for v in history.versions] == [1, 2]
    assert [(o.seq, o.status) for o in await wolog.recent(status="open")] == []


async def test_sqlite_runs_on_the_logs_own_thread_and_record_never_waits_for_it(
        wolog: WorkOrderLog, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    threads: list[str] = []
    real = wolog._write_sync

    def slow(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        release.wait(10)
        real(*args)

    monkeypatch.setattr(wolog, "_write_sync", slow)
    await wolog.record(order("a", at=fake_clock.time()))
    await until(lambda: bool(threads))  # the writer is stuck in the disk
    assert threads[0].startswith("workorder-log")
    # The disk hangs; the desk's sink still returns at once and the loop still runs.
    async with asyncio.timeout(1):
        await wolog.record(order("a", 2, at=fake_clock.time() + 1, status="acknowledged"))
    assert wolog.health().pending == 2
    release.set()
    assert await wolog.flush()
    assert wolog.health().pending == 0


async def test_a_full_disk_keeps_versions_in_memory_logs_once_and_writes_them_later(
        fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wo.sqlite3"
    t0 = fake_clock.time()
    async with WorkOrderLog(path, clock=fake_clock, retry_every=5.0) as log:
        real = log._write_sync
        attempts = 0

        def full(*args: Any) -> None:
            nonlocal attempts
            attempts += 1
            raise sqlite3.OperationalError(FULL)

        monkeypatch.setattr(log, "_write_sync", full)
        for seq, status in enumerate(["open", "acknowledged", "on_site"], 1):
            await log.record(order("a", seq, at=t0 + seq, status=status, raised=t0))
            assert not await log.flush()
        await log.record(order("b", at=t0 + 10))
        assert not await log.flush()
        assert attempts == 4, "every new version tries the disk again"
        await fake_clock.advance(5.0)
        await until(lambda: attempts == 5)  # and so does the retry timer
        health = log.health()
        assert health.storage_error is not None and FULL in health.storage_error
        assert (health.pending, health.lost, health.ok) == (4, 0, False)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and FULL in errors[0].getMessage(), "logged once"
        # The console still sees everything.
        assert [(o.id, o.seq) for o in await log.recent()] == [("b", 1), ("a", 3)]
        assert await log.count_open() == 2
        history = await log.get("a")
        assert history is not None and [v.status for v in history.versions] == [
            "open", "acknowledged", "on_site"]

        monkeypatch.setattr(log, "_write_sync", real)  # space was freed
        await fake_clock.advance(5.0)
        await until(lambda: log.health().pending == 0)
        assert log.health().ok
        assert "writes work again" in caplog.text
    with sqlite3.connect(path) as conn:  # on disk, as another reader sees it
        assert conn.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 4


async def test_a_long_outage_drops_the_oldest_unwritten_versions_and_counts_them(
        fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    t0 = fake_clock.time()
    async with WorkOrderLog(tmp_path / "wo.sqlite3", clock=fake_clock, max_pending=3) as log:
        def full(*args: Any) -> None:
            raise sqlite3.OperationalError(FULL)

        monkeypatch.setattr(log, "_write_sync", full)
        for n in range(5):
            await log.record(order(f"o{n}", at=t0 + n))
        assert (log.health().pending, log.health().lost) == (3, 2)
        assert [o.id for o in await log.recent()] == ["o4", "o3", "o2"]
        assert caplog.text.count("dropping the oldest") == 1
    assert "3 version(s) could not be written before closing" in caplog.text


async def test_an_unreadable_file_is_moved_aside_and_a_fresh_one_started(
        fake_clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wo.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    async with WorkOrderLog(path, clock=fake_clock) as log:
        await log.record(order("a", at=fake_clock.time()))
        assert await log.flush()
        health = log.health()
        assert health.replaced is not None and health.durable
    moved = Path(health.replaced)
    kept = moved.read_bytes()  # noqa: ASYNC240 (a small test file)
    assert kept.startswith(b"this is not a database"), "kept, not deleted"
    assert moved.name.startswith("wo.sqlite3.unreadable-")
    [critical] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert str(moved) in critical.getMessage()
    async with WorkOrderLog(path, clock=fake_clock) as again:
        assert [o.id for o in await again.recent()] == ["a"]
        assert again.health().replaced is None


async def test_a_file_from_a_newer_propgw_is_moved_aside_too(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "wo.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    async with WorkOrderLog(path, clock=fake_clock) as log:
        assert log.health().replaced is not None
        assert await log.recent() == []


async def test_a_file_that_cannot_be_opened_leaves_the_history_in_memory(
        fake_clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wo.sqlite3"
    path.mkdir()  # a directory where the file should be: nothing to move aside, nothing opens
    async with WorkOrderLog(path, clock=fake_clock) as log:
        await log.record(order("a", at=fake_clock.time()))
        assert await log.flush()
        assert [o.id for o in await log.recent()] == ["a"]
        health = log.health()
        assert not health.durable and not health.ok and health.replaced is None
    assert "kept in memory only" in caplog.text
    assert list(path.iterdir()) == []


async def test_in_memory_history_needs_no_thread_and_no_file(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    async with WorkOrderLog(None, clock=fake_clock) as log:
        await log.record(order("a", at=fake_clock.time()))
        assert await log.flush()
        assert await log.count_open() == 1
        assert set(threading.enumerate()) == before
        assert not log.health().durable


async def test_retention_deletes_whole_orders_by_age_and_by_count(
        fake_clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "wo.sqlite3"
    now = fake_clock.time()
    async with WorkOrderLog(path, clock=fake_clock, max_age=30 * DAY,
                            max_versions=5) as log:
        await log.record(order("ancient", at=now - 40 * DAY))
        await log.record(order("old", at=now - 3 * DAY))
        await log.record(order("old", 2, at=now - 2 * DAY, status="resolved",
                               raised=now - 3 * DAY))
        for seq in (1, 2, 3):  # newest, three versions
            await log.record(order("new", seq, at=now - DAY + seq, raised=now - DAY))
        await log.record(order("mid", at=now - 2.5 * DAY))
        assert await log.flush()
        # ancient: too old; then newest first: new (3) + old (2) = 5, mid is past the bound.
        assert await log.prune() == 2
        assert [o.id for o in await log.recent()] == ["new", "old"]
        history = await log.get("old")
        assert history is not None and len(history.versions) == 2, "timelines stay whole"
        assert await log.prune() == 0
        fake_clock.step_wall(29 * DAY)
        assert await log.prune() == 2
        assert [o.id for o in await log.recent()] == ["new"]
    assert "deleted (retention)" in caplog.text
    # Retention also runs when the file is opened.
    async with WorkOrderLog(path, clock=fake_clock, max_age=DAY) as again:
        assert await again.recent() == []


async def test_retention_runs_by_itself_after_enough_writes(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    now = fake_clock.time()
    async with WorkOrderLog(tmp_path / "wo.sqlite3", clock=fake_clock, max_versions=3,
                            prune_every=4) as log:
        for n in range(4):
            await log.record(order(f"o{n}", at=now + n))
            assert await log.flush()
        assert [o.id for o in await log.recent()] == ["o3", "o2", "o1"]


async def test_a_closed_log_refuses_records_and_queries(fake_clock: FakeClock) -> None:
    log = WorkOrderLog(None, clock=fake_clock)
    with pytest.raises(RuntimeError, match="not open"):
        await log.record(order("a", at=fake_clock.time()))
    with pytest.raises(WorkOrderLogError, match="closed"):
        await log.recent()
    assert not await log.flush()
    async with log:
        with pytest.raises(RuntimeError, match="already open"):
            await log.__aenter__()
    with pytest.raises(WorkOrderLogError, match="closed"):
        await log.get("a")


@pytest.mark.parametrize("kw", [{"max_age": 0}, {"retry_every": -1}, {"max_versions": 0},
                                {"max_pending": 0}, {"prune_every": 0}])
def test_impossible_bounds_are_refused(fake_clock: FakeClock, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        WorkOrderLog(None, clock=fake_clock, **kw)


def test_the_history_lives_next_to_the_other_state_files(tmp_path: Path) -> None:
    text = "site: {id: s1, name: S, gateway_id: gw1}\ndevices: []\n"
    assert work_order_log_path(load_config_text(text), env={}) is None
    config = load_config_text(text + f"state_dir: {tmp_path}\n")
    assert work_order_log_path(config, env={}) == tmp_path / "workorders-s1-gw1.sqlite3"
    assert work_order_log_path(load_config_text(text), env={"STATE_DIRECTORY": "/x:/y"}) \
        == Path("/x/workorders-s1-gw1.sqlite3")

