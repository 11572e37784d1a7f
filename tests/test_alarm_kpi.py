"""Alarm KPIs computed from a real journal filled on the fake clock over 25 hours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.alarms import alarm_report, render_report
from gateway.clock import FakeClock
from tests.test_alarm_flood import flood_site
from tests.test_alarm_lifecycle_rig import Rig


async def fill(rig: Rig) -> float:
    """One busy day: a stale P0, a flood of P3s, a chattering P2, some operator actions."""
    t0 = rig.clock.time()
    await rig.on("rp0@S00")  # never ends: stale after 24 h
    for i in range(1, 15):
        await rig.on(f"rp3@S{i:02d}")
        await rig.clock.advance(5)
    for _ in range(3):
        await rig.on("rp2@S15")
        await rig.clock.advance(5)
        await rig.off("rp2@S15")
        await rig.clock.advance(5)
    await rig.actions.acknowledge("rp3@S01", actor="op")
    await rig.actions.shelve("rp3@S02", actor="op", reason="known", duration=600)
    await rig.actions.comment("rp0@S00", actor="op", text="maintenance called")
    await rig.advance(25 * 3600, step=600)
    return t0


async def test_kpis_from_the_journal(fake_clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite3"
    async with Rig(fake_clock, path, flood_site(20)) as rig:
        t0 = await fill(rig)
        report = await rig.journal.run(lambda conn: alarm_report(
            conn, since=t0 - 3600, now=fake_clock.time()))

    assert report.covered_from == t0, "the journal starts later than asked"
    assert (report.activations, report.new_incidents) == (18, 16)
    assert abs(report.hours - (fake_clock.time() - t0) / 3600) < 1e-9
    assert abs(report.per_hour - 18 / report.hours) < 1e-9
    assert abs(report.per_day - report.per_hour * 24) < 1e-9
    assert report.peak_hour == 18
    assert report.priority_mix == {"P0": 1, "P2": 3, "P3": 14}
    assert [(a.alarm_id, a.count) for a in report.top[:2]] == [("rp2@S15", 3), ("rp0@S00", 1)]
    assert len(report.top) == 10
    assert abs(report.top[0].value - 3 / 18) < 1e-9

    [flood] = report.floods
    assert flood.ended is not None and flood.new_alarms >= 11 and flood.grouped >= 4
    assert report.flood_seconds == flood.ended - flood.started > 600
    assert 0 < report.flood_share < 0.01

    assert [(a.alarm_id, a.count) for a in report.chattering] == [("rp2@S15", 1)]
    assert [a.alarm_id for a in report.stale] == ["rp0@S00"] + [
        f"rp3@S{i:02d}" for i in range(1, 15)], "still active after 24 h, oldest first"
    assert report.stale[0].value > 24 * 3600
    assert report.operator_actions == {"acknowledged": 1, "comment": 1, "shelved": 1}
    assert report.current == {"active_acknowledged": 1, "active_unacknowledged": 14}, \
        "the chattering P2 ended while grouped in the flood and closed with it"

    text = render_report(report, site="s1")
    for line in ("alarms (activations)   18  (16 new incidents)", "floods                 1,",
                 "chattering alarms      1", "  rp2@S15 (P2 cat_p2): 1 episode(s)",
                 "stale (active > 24 h)  15", "   1. rp2@S15 (P2 cat_p2): 3 (17%)",
                 "priority mix           P0 1 (6%), P2 3 (17%), P3 14 (78%)",
                 "operator actions       acknowledged 1, comment 1, shelved 1"):
        assert line in text, line


async def test_a_window_after_the_busy_hour_has_no_alarms_but_the_stale_one(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite3"
    async with Rig(fake_clock, path, flood_site(20)) as rig:
        await fill(rig)
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        report = alarm_report(conn, since=fake_clock.time() - 3600, now=fake_clock.time())
    assert report.activations == 0 and report.top == [] and report.floods == []
    assert len(report.stale) == 15
    assert "top 10 most frequent\n  none" in render_report(report)


async def test_an_empty_journal_reports_zeros(fake_clock: FakeClock, tmp_path: Path) -> None:
    async with Rig(fake_clock, tmp_path / "a.sqlite3") as rig:
        report = await rig.journal.run(lambda conn: alarm_report(
            conn, since=fake_clock.time() - 86400, now=fake_clock.time()))
    assert (report.activations, report.per_hour, report.flood_share) == (0, 0.0, 0.0)
    assert "alarms now             all normal" in render_report(report)
