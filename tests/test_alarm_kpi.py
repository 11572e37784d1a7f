"""Alarm KPIs computed from a real journal filled on the fake clock over 25 hours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.alarms import alarm_report, render_report
from gateway.clock import FakeClock
from gateway.config import GatewayConfig
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
    assert report.per_hour is not None and report.per_day is not None, "a covered span has rates"
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
    assert (report.activations, report.per_hour, report.flood_share) == (0, None, 0.0)
    text = render_report(report)
    assert "alarms now             all normal" in text
    assert "per hour             -  (needs an hour of journal; no alarm in the journal yet)" \
        in text


def shanghai(devices: int = 20) -> GatewayConfig:
    config = flood_site(devices)
    return config.model_copy(update={"site": config.site.model_copy(
        update={"timezone": "Asia/Shanghai"})})


async def test_three_alarms_in_90_seconds_are_not_a_rate_per_hour(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    """It used to say "121 per hour" (and later "3 per hour, 72 per day") for this."""
    async with Rig(fake_clock, tmp_path / "a.sqlite3", shanghai()) as rig:
        for i in range(3):
            if i:
                await rig.clock.advance(45)
            await rig.on(f"rp1@S{i:02d}")
        report = await rig.journal.run(lambda conn: alarm_report(
            conn, since=fake_clock.time() - 86400, now=fake_clock.time(),
            timezone="Asia/Shanghai"))
    assert (report.activations, report.per_hour, report.per_day) == (3, None, None)
    assert report.span == 90.0
    text = render_report(report, site="s1")
    assert "alarms (activations)   3  (3 new incidents) in the last 1.5 min" in text
    assert "per hour             -  (needs an hour of journal; 3 in 1.5 min)" in text
    assert "per day              -  (needs a day of journal; 3 in 1.5 min)" in text


async def test_times_are_the_sites_and_the_active_alarms_are_listed(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    t0 = fake_clock.time()  # 2026-01-01 00:00 UTC, 08:00 in Shanghai
    async with Rig(fake_clock, tmp_path / "a.sqlite3", shanghai()) as rig:
        await rig.on("rp0@S00")
        await rig.clock.advance(600)
        await rig.on("rp2@S01")
        await rig.actions.acknowledge("rp2@S01", actor="op")
        await rig.clock.advance(6000)
        await rig.on("rp3@S02")
        await rig.off("rp3@S02")
        await rig.clock.advance(600)
        report = await rig.journal.run(lambda conn: alarm_report(
            conn, since=t0 - 3600, now=fake_clock.time(), timezone="Asia/Shanghai"))
    assert report.per_hour == 1.5 and report.per_day is None, "3 in a full 2 h: an average"
    assert report.peak_hour_start == t0
    assert [(a.alarm_id, a.state, a.condition) for a in report.active] == [
        ("rp0@S00", "active_unacknowledged", True),
        ("rp2@S01", "active_acknowledged", True),
        ("rp3@S02", "returned_unacknowledged", False)]
    text = render_report(report, site="s1")
    assert text.startswith("alarm report for s1: 2026-01-01 07:00+08:00 .. "
                           "2026-01-01 10:00+08:00 (Asia/Shanghai)")
    assert "(the journal starts at 2026-01-01 08:00+08:00: the report covers 2.0 h)" in text
    assert "per hour             1.50" in text
    assert "busiest hour         2  (2026-01-01 08:00+08:00)" in text
    assert "UTC" not in text
    assert "  P0 rp0@S00 (cat_p0): active unacknowledged since 2026-01-01 08:00+08:00 " \
           "(2.0 h): P0" in text
    assert "  P3 rp3@S02 (cat_p3): returned unacknowledged since 2026-01-01 09:50+08:00 " \
           "(10.0 min), condition over: P3" in text


async def test_hours_are_the_sites_clock_hours(fake_clock: FakeClock, tmp_path: Path) -> None:
    """India is UTC+5:30: its hours start at half past in UTC."""
    async with Rig(fake_clock, tmp_path / "a.sqlite3", flood_site(20)) as rig:
        await rig.clock.advance(40 * 60)  # 00:40 UTC = 06:10 in Kolkata
        await rig.on("rp1@S01")
        report = await rig.journal.run(lambda conn: alarm_report(
            conn, since=fake_clock.time() - 3600, now=fake_clock.time(),
            timezone="Asia/Kolkata"))
    assert report.hourly == [(1_767_225_600 + 30 * 60, 1)]
    assert "busiest hour         1  (2026-01-01 06:00+05:30)" in render_report(report)
