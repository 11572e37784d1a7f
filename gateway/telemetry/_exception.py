"""Report by exception, per point: what is worth sending upstream, and when.

A point is reported

* the first time it is seen (``first``);
* when its quality changes (``quality``): good, comm-loss and bad; each change is reported, in
  order, one per ``min_interval`` (a comm-loss that ends within ``min_interval`` is still sent,
  and its end follows ``min_interval`` later);
* when a numeric value moved more than its deadband from the last *reported* value, or any other
  value changed at all (``change``); the deadband is the larger of ``deadband`` and
  ``deadband_percent`` of the last reported value, so the absolute one is a floor near zero;
* at least every ``max_interval``, changed or not (``heartbeat``).

No point is reported twice within ``min_interval``: a change that arrives sooner waits, and the
value sent is the newest one at that time (a change that went back within the deadband before
then is not sent). Times are the injected clock's monotonic seconds: a wall-clock step neither
delays nor hurries a report.

This module is pure bookkeeping (no I/O, no awaiting): :meth:`ReportByException.offer` is called
for every reading and :meth:`ReportByException.due` on a timer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from gateway.config import ReportPolicy
from gateway.model import PointKey, Quality, Reading, Value

__all__ = ["Reason", "Report", "ReportByException", "significant"]

log = logging.getLogger(__name__)

Reason = Literal["first", "change", "quality", "heartbeat"]

#: Tolerance of time comparisons (sums of float seconds).
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Report:
    """One point to send: the reading, why, and its unit."""

    reading: Reading
    reason: Reason
    unit: str | None = None


@dataclass(slots=True)
class _Point:
    policy: ReportPolicy
    unit: str | None
    latest: Reading
    reported_at: float | None = None
    reported_value: Value = None
    reported_quality: Quality | None = None
    #: The first reading whose quality differs from the reported one, until it is reported.
    quality_event: Reading | None = None
    #: The latest value moved beyond the deadband from the reported one.
    changed: bool = False
    #: When this point is next looked at (inf: not scheduled).
    wake: float = math.inf


@dataclass(slots=True)
class _Counters:
    offered: int = 0
    reported: int = 0
    #: Readings within the deadband of the last reported value (and of the same quality).
    suppressed: int = 0
    #: Changes that had to wait for min_interval (sent later, with the newest value).
    deferred: int = 0
    untracked: int = 0
    by_reason: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("first", "change", "quality", "heartbeat"), 0))


class ReportByException:
    """The report-by-exception state of every point.

    Args:
        max_points: Points tracked at most (templated MQTT device ids can be many); readings
            of further points are not reported and are counted in ``untracked``.
    """

    def __init__(self, *, max_points: int = 50_000) -> None:
        self._points: dict[PointKey, _Point] = {}
        self._heap: list[tuple[float, int, PointKey]] = []
        self._seq = itertools.count()
        self._max_points = max_points
        self.counters = _Counters()

    def __len__(self) -> int:
        return len(self._points)

    def offer(self, reading: Reading, policy: ReportPolicy, now: float,
              unit: str | None = None) -> Report | None:
        """Take a reading of a selected point; the report to send now, if any (otherwise the
        point is scheduled for when it may be reported)."""
        self.counters.offered += 1
        key = reading.key
        p = self._points.get(key)
        if p is None:
            if len(self._points) >= self._max_points:
                self.counters.untracked += 1
                if self.counters.untracked == 1:
                    log.warning("telemetry: more than %d points; readings of further points "
                                "are not reported (counted, logged once)", self._max_points)
                return None
            p = self._points[key] = _Point(policy, unit, reading)
            return self._report(key, p, now, "first")
        p.policy, p.unit = policy, unit
        p.latest = reading
        if reading.quality is not p.reported_quality:
            if p.quality_event is None:
                p.quality_event = reading
            p.changed = False
        else:
            p.changed = significant(reading.value, p.reported_value, policy)
            if not p.changed and p.quality_event is None:
                self.counters.suppressed += 1
        reason = self._reason(p, now)
        if reason is not None:
            return self._report(key, p, now, reason)
        if p.changed or p.quality_event is not None:
            self.counters.deferred += 1
            assert p.reported_at is not None
            self._schedule(key, p, p.reported_at + p.policy.min_interval)
        return None

    def due(self, now: float) -> list[Report]:
        """Reports whose time has come: changes that waited for ``min_interval``, and
        heartbeats."""
        out: list[Report] = []
        while self._heap and self._heap[0][0] <= now + _EPS:
            wake, _, key = heapq.heappop(self._heap)
            p = self._points.get(key)
            if p is None or p.wake != wake:
                continue  # superseded by an earlier wake-up
            p.wake = math.inf
            reason = self._reason(p, now)
            if reason is not None:
                out.append(self._report(key, p, now, reason))
            elif p.reported_at is not None:
                self._schedule(key, p, p.reported_at + p.policy.max_interval)
        return out

    def forget(self, key: PointKey) -> None:
        """Stop tracking a point (no longer selected after a reload)."""
        self._points.pop(key, None)

    # ------------------------------------------------------------------ helpers

    def _reason(self, p: _Point, now: float) -> Reason | None:
        if p.reported_at is None:
            return "first"
        since = now - p.reported_at
        if since + _EPS < p.policy.min_interval:
            return None
        if p.quality_event is not None:
            return "quality"
        if p.changed:
            return "change"
        if since + _EPS >= p.policy.max_interval:
            return "heartbeat"
        return None

    def _report(self, key: PointKey, p: _Point, now: float, reason: Reason) -> Report:
        reading = p.latest
        event = p.quality_event
        if event is not None and event.quality is not p.latest.quality:
            # The quality changed again meanwhile: send the intermediate state first.
            reading = event
        p.reported_at = now
        p.reported_value = reading.value
        p.reported_quality = reading.quality
        p.quality_event = None
        p.changed = False
        if reading is not p.latest:
            p.quality_event = p.latest  # its quality differs from the one just reported
            self._schedule(key, p, now + p.policy.min_interval)
        else:
            self._schedule(key, p, now + p.policy.max_interval, replace=True)
        self.counters.reported += 1
        self.counters.by_reason[reason] += 1
        return Report(reading, reason, p.unit)

    def _schedule(self, key: PointKey, p: _Point, when: float, *,
                  replace: bool = False) -> None:
        if when < p.wake or replace:
            p.wake = when
            heapq.heappush(self._heap, (when, next(self._seq), key))
            if len(self._heap) > 4 * len(self._points) + 1024:
                # Superseded wake-ups pile up (every report replaces one): rebuild.
                self._heap = [(q.wake, next(self._seq), k) for k, q in self._points.items()
                              if q.wake != math.inf]
                heapq.heapify(self._heap)


def significant(new: Value, old: Value, policy: ReportPolicy) -> bool:
    """Whether ``new`` differs enough from the last reported ``old`` to be reported."""
    if not (isinstance(new, int | float) and isinstance(old, int | float)
            and _numeric(new) and _numeric(old)):
        return new != old or type(new) is not type(old)
    if not (math.isfinite(new) and math.isfinite(old)):
        return not (new == old or (math.isnan(new) and math.isnan(old)))
    band = max(policy.deadband, abs(old) * policy.deadband_percent / 100.0)
    return abs(new - old) > band


def _numeric(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
