"""Consumption per interval from one register: resets, replaced meters, gaps, day boundaries
in the site's zone (pure units: no I/O, times given explicitly)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.accounting import Closed, CounterAccount, interval_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = 86400.0


def at(text: str, tz: dt.tzinfo = SHANGHAI) -> float:
    """Wall time of a local 'YYYY-MM-DD HH:MM[:SS]' in ``tz``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def feed_all(acct: CounterAccount, readings: list[tuple[float, float]]) -> list[Closed]:
    out: list[Closed] = []
    for ts, value in readings:
        closed, _ = acct.feed(ts, value)
        out += closed
    return out


def hours(closed: list[Closed]) -> dict[str, float | None]:
    return {dt.datetime.fromtimestamp(c.start, SHANGHAI).strftime("%m-%d %H"):
            None if c.value is None else round(c.value, 6)
            for c in closed if c.period == "hour"}


def days(closed: list[Closed]) -> dict[str, float | None]:
    return {dt.datetime.fromtimestamp(c.start, SHANGHAI).strftime("%m-%d"):
            None if c.value is None else round(c.value, 6)
            for c in closed if c.period == "day"}


def steady(start: float, end: float, step: float, value0: float, per_hour: float
           ) -> list[tuple[float, float]]:
    """Readings every ``step`` seconds of a register counting ``per_hour`` units an hour."""
    n = int((end - start) / step)
    return [(start + i * step, value0 + per_hour * i * step / 3600) for i in range(n + 1)]


def account(**kwargs: float) -> CounterAccount:
    return CounterAccount(("hour", "day"), SHANGHAI, max_gap=kwargs.pop("max_gap", 7 * DAY),
                          **kwargs)


def test_each_hour_gets_its_own_consumption_and_the_first_partial_hour_is_incomplete() -> None:
    acct = account()
    closed = feed_all(acct, steady(at("2026-03-01 09:30"), at("2026-03-01 12:00"), 60,
                                   1000.0, 6.0))
    assert hours(closed) == {"03-01 09": None, "03-01 10": 6.0, "03-01 11": 6.0}
    assert [c.end - c.start for c in closed] == [3600.0] * 3


def test_days_begin_at_midnight_in_asia_shanghai_not_utc() -> None:
    # Local midnight in Shanghai is 16:00 UTC; readings every 10 minutes for two days.
    acct = account()
    start = at("2026-03-01 00:00")
    closed = feed_all(acct, steady(start, start + 2 * DAY, 600, 0.0, 2.5))
    assert days(closed) == {"03-01": 60.0, "03-02": 60.0}
    day = next(c for c in closed if c.period == "day")
    assert dt.datetime.fromtimestamp(day.start, dt.UTC).hour == 16
    assert interval_of("day", at("2026-03-01 23:59:59"), SHANGHAI) == (start, start + DAY)
    assert len(hours(closed)) == 48 and set(hours(closed).values()) == {2.5}


def test_a_register_reset_to_zero_loses_at_most_one_poll_interval() -> None:
    # 10 kWh an hour, read every minute; at 10:30 the register is reset and counts from 0.
    acct = account()
    before = steady(at("2026-03-01 10:00"), at("2026-03-01 10:30"), 60, 5000.0, 10.0)
    after = [(ts, (ts - at("2026-03-01 10:30:30")) * 10 / 3600)
             for ts, _ in steady(at("2026-03-01 10:31"), at("2026-03-01 12:00"), 60, 0, 0)]
    closed, step = [], []
    for ts, value in before + after:
        done, s = acct.feed(ts, value)
        closed += done
        step += [s] if s else []
    assert [s.kind for s in step] == ["restart"]
    got = hours(closed)
    # The minute 10:30-10:31 is the one lost: the reset's segment counts 0, and what the new
    # register counted before its first reading is its baseline.
    assert got["03-01 10"] == pytest.approx(10.0 - 10 / 60, abs=1e-6)
    assert got["03-01 11"] == pytest.approx(10.0)


def test_a_replaced_meter_with_another_reading_counts_on_from_its_own() -> None:
    # Old meter at 12 345 kWh; the new one starts at 87.2 (went back: a swap); 4 kWh/h.
    acct = account()
    old = steady(at("2026-03-01 10:00"), at("2026-03-01 10:45"), 300, 12345.0, 4.0)
    new = steady(at("2026-03-01 10:50"), at("2026-03-01 13:00"), 300, 87.2, 4.0)
    closed = feed_all(acct, old + new)
    got = hours(closed)
    assert got["03-01 10"] == pytest.approx(4.0 - 4 * 5 / 60, abs=1e-6)  # 10:45-10:50 lost
    assert got["03-01 11"] == pytest.approx(4.0) and got["03-01 12"] == pytest.approx(4.0)


def test_a_replaced_meter_with_a_higher_reading_is_caught_by_max_per_hour() -> None:
    acct = account(max_per_hour=50.0)
    old = steady(at("2026-03-01 10:00"), at("2026-03-01 10:30"), 60, 100.0, 6.0)
    new = steady(at("2026-03-01 10:31"), at("2026-03-01 12:00"), 60, 40000.0, 6.0)
    kinds = []
    closed: list[Closed] = []
    for ts, value in old + new:
        done, s = acct.feed(ts, value)
        closed += done
        kinds += [s.kind] if s else []
    assert kinds == ["jump"]
    assert hours(closed)["03-01 10"] == pytest.approx(6.0 - 0.1, abs=1e-6)
    assert hours(closed)["03-01 11"] == pytest.approx(6.0)


def test_a_silence_is_apportioned_over_the_hours_it_covers_and_totals_stay_right() -> None:
    # Silent from 10:40 to 12:20 while 100 units were used: 20/60/20 minutes of it.
    acct = account()
    readings = [*steady(at("2026-03-01 10:00"), at("2026-03-01 10:40"), 60, 0.0, 60.0),
                (at("2026-03-01 12:20"), 140.0),
                *steady(at("2026-03-01 12:21"), at("2026-03-01 13:00"), 60, 141.0, 60.0)]
    closed = feed_all(acct, readings)
    got = hours(closed)
    assert got == {"03-01 10": pytest.approx(60.0), "03-01 11": pytest.approx(60.0),
                   "03-01 12": pytest.approx(60.0)}
    assert sum(v for v in got.values() if v is not None) == pytest.approx(180.0)


def test_a_silence_longer_than_max_gap_is_not_guessed() -> None:
    acct = account(max_gap=6 * 3600)
    first = steady(at("2026-03-01 10:00"), at("2026-03-01 11:30"), 600, 0.0, 1.0)
    later = steady(at("2026-03-01 20:10"), at("2026-03-01 22:00"), 600, 50.0, 1.0)
    kinds: list[str] = []
    closed: list[Closed] = []
    for ts, value in first + later:
        done, s = acct.feed(ts, value)
        closed += done
        kinds += [s.kind] if s else []
    assert kinds == ["gap"]
    got = hours(closed)
    # Hour 11 is cut short by the silence, 20 starts after it: both incomplete; 12-19 skipped.
    assert got == {"03-01 10": 1.0, "03-01 11": None, "03-01 20": None, "03-01 21": 1.0}
    assert days(closed) == {"03-01": None}


def test_the_wall_clock_stepping_back_does_not_move_intervals_back() -> None:
    acct = account()
    feed_all(acct, [(at("2026-03-01 10:05"), 0.0), (at("2026-03-01 10:50"), 5.0)])
    closed, step = acct.feed(at("2026-03-01 10:20"), 6.0)  # NTP stepped back 30 min
    assert closed == [] and step is None
    closed = feed_all(acct, [(at("2026-03-01 11:00"), 7.0)])
    assert hours(closed) == {"03-01 10": None}
    assert closed[0].end == at("2026-03-01 11:00")


def test_state_round_trip_carries_on_exactly() -> None:
    readings = steady(at("2026-03-01 09:00"), at("2026-03-01 14:00"), 300, 10.0, 3.0)
    whole = feed_all(account(), readings)
    first = account()
    part1 = feed_all(first, readings[:30])
    second = account()
    second.restore(first.to_state())
    part2 = feed_all(second, readings[30:])
    assert part1 + part2 == whole


def test_days_with_daylight_saving_have_their_real_length() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = interval_of("day", at("2026-03-29 12:00", berlin), berlin)
    assert end - start == 23 * 3600
    acct = CounterAccount(("day",), berlin, max_gap=7 * DAY)
    closed = feed_all(acct, steady(at("2026-03-29 00:00", berlin), at("2026-03-30 00:00", berlin),
                                   900, 0.0, 1.0))
    assert [c.value for c in closed] == [pytest.approx(23.0)]
