"""Consumption per interval from one cumulative register (kWh, m³): pure, no I/O, no clock.

A register only ever counts up, so the consumption between two good readings is their
difference, whatever happened in between. Each such *segment* is spread over the intervals it
covers in proportion to time (linear apportioning): a reading every second puts each second's
consumption into its own hour; a meter silent from 10:40 to 12:20 has its 100 minutes'
consumption split 20/60/20 over the hours 10, 11 and 12. The intervals always add up to the
register's own difference, so hour, day and building totals agree with the meter.

Decisions, in order of checks, for each new good reading:

* The wall clock went back (an NTP step): the segment counts into the open interval, and time
  does not move back.
* The register went **back**: it restarted (reset to 0, or a replaced meter with another
  reading). The segment counts 0 and the new value is the new baseline: at most one poll
  interval's consumption is lost, and nothing is invented.
* The register went forward by more than ``max_per_hour`` allows for the segment's length: a
  replaced meter with a higher reading; treated like a restart.
* The segment is longer than ``max_gap``: how its consumption was spread is unknown. The open
  interval and the one the new reading falls in are closed *incomplete*, and the intervals in
  between are skipped.

An interval is *complete* when its whole length was covered by segments (the first interval
after a meter is first seen is not: it began before the first reading). Incomplete intervals
are reported with value ``None`` so that whoever adds them up (building totals) knows not to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import Period

__all__ = ["Closed", "CounterAccount", "Step", "interval_of"]

_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Closed:
    """One finished interval of one register."""

    period: Period
    start: float
    end: float
    #: Consumption in the register's unit; ``None``: incomplete (part of it is unknown).
    value: float | None


@dataclass(frozen=True, slots=True)
class Step:
    """What :meth:`CounterAccount.feed` made of a reading that was not plain consumption."""

    #: ``"restart"`` (went back), ``"jump"`` (implausibly far forward), ``"gap"`` (max_gap).
    kind: str
    before: float
    after: float
    seconds: float


@dataclass(slots=True)
class _Open:
    start: float
    end: float
    total: float
    complete: bool


class CounterAccount:
    """Turns one register's good readings into consumption per interval.

    Args:
        periods: The intervals to keep (``hour``, ``day``).
        tz: The site's time zone: days (and hours, in zones offset by half hours) begin at
            local midnight (the local full hour).
        max_gap: Longest silence whose consumption is apportioned, in seconds.
        max_per_hour: Largest plausible consumption per hour; None: no limit.
    """

    def __init__(self, periods: Sequence[Period], tz: dt.tzinfo, *, max_gap: float,
                 max_per_hour: float | None = None) -> None:
        self.periods = tuple(periods)
        self.tz = tz
        self.max_gap = max_gap
        self.max_per_hour = max_per_hour
        #: The last good reading: (wall time, register value).
        self.last: tuple[float, float] | None = None
        self._open: dict[Period, _Open] = {}

    def feed(self, ts: float, value: float) -> tuple[list[Closed], Step | None]:
        """Account one good reading taken at wall time ``ts``.

        Returns:
            The intervals this reading finished (oldest first, per period), and what was
            unusual about it (None when it was plain consumption).
        """
        if self.last is None:
            self._baseline(ts, value)
            return [], None
        t0, v0 = self.last
        t1 = max(ts, t0)
        delta = value - v0
        step: Step | None = None
        if t1 - t0 > self.max_gap:
            step = Step("gap", v0, value, t1 - t0)
            cut = [Closed(p, b.start, b.end, None) for p, b in self._open.items()]
            # The interval the silence ended in is cut short too: it opens incomplete.
            self._baseline(t1, value)
            return cut, step
        if delta < 0:
            step, delta = Step("restart", v0, value, t1 - t0), 0.0
        elif self.max_per_hour is not None \
                and delta > self.max_per_hour * max(t1 - t0, 60.0) / _HOUR:
            step, delta = Step("jump", v0, value, t1 - t0), 0.0
        closed: list[Closed] = []
        for period in self.periods:
            closed += self._spread(period, t0, t1, delta)
        self.last = (t1, value)
        return closed, step

    def to_state(self) -> dict[str, Any]:
        """What a restart needs to carry on where this left off (JSON-able)."""
        return {"last": list(self.last) if self.last is not None else None,
                "open": {p: [b.start, b.end, b.total, b.complete]
                         for p, b in self._open.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Carry on from :meth:`to_state`'s output; a period not saved starts afresh."""
        last = state.get("last")
        if last is None:
            return
        self.last = (float(last[0]), float(last[1]))
        saved = state.get("open", {})
        for period in self.periods:
            if period in saved:
                start, end, total, complete = saved[period]
                self._open[period] = _Open(float(start), float(end), float(total),
                                           bool(complete))
            else:
                start, end = interval_of(period, self.last[0], self.tz)
                self._open[period] = _Open(start, end, 0.0, self.last[0] == start)

    def _baseline(self, ts: float, value: float) -> None:
        self.last = (ts, value)
        for period in self.periods:
            start, end = interval_of(period, ts, self.tz)
            self._open[period] = _Open(start, end, 0.0, ts == start)

    def _spread(self, period: Period, t0: float, t1: float, amount: float) -> list[Closed]:
        """Add ``amount``, consumed evenly over [t0, t1], to the intervals it covers."""
        b = self._open[period]
        if t1 <= t0:
            b.total += amount
            return []
        closed: list[Closed] = []
        at = t0
        while t1 >= b.end:
            b.total += amount * (b.end - at) / (t1 - t0)
            closed.append(Closed(period, b.start, b.end, b.total if b.complete else None))
            at = b.end
            start, end = interval_of(period, at, self.tz)
            b = _Open(start, end, 0.0, True)
        b.total += amount * (t1 - at) / (t1 - t0)
        self._open[period] = b
        return closed


def interval_of(period: Period, ts: float, tz: dt.tzinfo) -> tuple[float, float]:
    """The [start, end) wall times of the hour or local day that contains ``ts``."""
    local = dt.datetime.fromtimestamp(ts, tz)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0).timestamp()
        return start, start + _HOUR
    day = local.date()
    begin = dt.datetime.combine(day, dt.time(0), tzinfo=tz).timestamp()
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).timestamp()
    return begin, end
