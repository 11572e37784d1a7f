"""Alarm-system KPIs (ISA-18.2 §16, EEMUA 191) computed from the alarm journal.

Everything is read from the journal's tables, so the same numbers come out of the console (via
:meth:`AlarmJournal.run`) and of ``propgw alarms report`` (a read-only connection).

An *alarm* here is an activation: a new incident or a repeat while its incident is open,
announced or not (a shelved or grouped activation still counts: it happened).

Rates are never extrapolated from a short span: "per hour" is an average only once the journal
covers at least an hour of the window, "per day" once it covers a day; until then the report
gives the count over the real span ("3 in 1.5 min"), which is what an operator can check.
Times are shown in the site's time zone with their UTC offset, and hours (busiest hour, hourly
counts) are the site's clock hours.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.alarms._lifecycle_state import AlarmRecord

__all__ = ["ActiveAlarm", "AlarmReport", "FloodSummary", "ListedAlarm", "alarm_report",
           "render_report"]

_ACTIVATIONS = ("activated", "reactivated")
_OPERATOR_ACTIONS = ("acknowledged", "shelved", "unshelved", "reset", "removed_from_service",
                     "returned_to_service", "comment")


@dataclass(frozen=True)
class ListedAlarm:
    """One alarm in a KPI list."""

    alarm_id: str
    category: str
    priority: str
    count: int = 0
    #: Share of all activations (top-10), or seconds active (stale).
    value: float = 0.0


@dataclass(frozen=True)
class ActiveAlarm:
    """An alarm that is not plain normal now: active, latched, waiting for acknowledgement,
    shelved or out of service."""

    alarm_id: str
    priority: str
    category: str
    #: Lifecycle state, e.g. ``active_unacknowledged``, ``shelved``.
    state: str
    #: Whether its condition holds now.
    condition: bool
    #: When it (last) became active, epoch seconds.
    since: float
    message_zh: str
    message_en: str


@dataclass(frozen=True)
class FloodSummary:
    flood_id: str
    started: float
    ended: float | None
    new_alarms: int
    grouped: int


@dataclass(frozen=True)
class AlarmReport:
    """KPIs over ``[since, now]``; averages use the part of it the journal covers, and only
    once that part is long enough (``per_hour``: an hour, ``per_day``: a day; else None)."""

    since: float
    now: float
    #: Start of the covered period: ``since``, or the oldest journal entry if later.
    covered_from: float
    activations: int
    new_incidents: int
    per_hour: float | None
    per_day: float | None
    peak_hour: int
    peak_hour_start: float | None
    priority_mix: dict[str, int]
    top: list[ListedAlarm]
    floods: list[FloodSummary]
    flood_seconds: float
    chattering: list[ListedAlarm]
    stale: list[ListedAlarm]
    operator_actions: dict[str, int]
    stale_after: float = 86400.0
    #: Now, from the alarm table: lifecycle state -> number of alarms.
    current: dict[str, int] = field(default_factory=dict)
    #: Activations per hour of the site's clock: (start of the hour, epoch seconds; count),
    #: oldest first; hours without any are left out.
    hourly: list[tuple[float, int]] = field(default_factory=list)
    #: Every alarm that is not plain normal now, life safety first, then oldest first.
    active: list[ActiveAlarm] = field(default_factory=list)
    #: The site's IANA time zone: the report's times and hours are in it.
    timezone: str = "UTC"

    @property
    def span(self) -> float:
        """Seconds of the window the journal covers."""
        return max(self.now - self.covered_from, 0.0)

    @property
    def hours(self) -> float:
        return self.span / 3600.0

    @property
    def flood_share(self) -> float:
        """Fraction of the covered period spent in a flood."""
        span = self.now - self.covered_from
        return self.flood_seconds / span if span > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(hours=self.hours, flood_share=self.flood_share)
        return data


def alarm_report(conn: sqlite3.Connection, *, since: float, now: float,
                 stale_after: float = 86400.0, timezone: str = "UTC") -> AlarmReport:
    """Compute the KPIs from a journal connection (read only).

    Args:
        conn: The alarm journal.
        since: Start of the window, epoch seconds.
        now: End of the window.
        stale_after: An alarm active longer than this is stale.
        timezone: The site's IANA zone: hours are counted on its clock.
    """
    tz = _zone(timezone)
    oldest = conn.execute("SELECT MIN(ts) FROM events").fetchone()[0]
    covered_from = max(since, oldest) if oldest is not None else now
    # Averages only over what really happened: 3 alarms in the journal's first 1.5 minutes
    # are not "120 per hour" (nor "3 per hour": that hour has not been seen).
    span = max(now - covered_from, 0.0)

    marks = ",".join("?" * len(_ACTIVATIONS))
    rows = conn.execute(
        f"SELECT ts, alarm_id, category, priority, transition FROM events "
        f"WHERE ts >= ? AND ts <= ? AND transition IN ({marks}) ORDER BY seq",
        (since, now, *_ACTIVATIONS)).fetchall()
    activations = len(rows)
    per_alarm = Counter(r[1] for r in rows)
    about = {r[1]: (r[2], r[3]) for r in rows}
    hours = Counter(_hour_start(r[0], tz) for r in rows)
    peak_start, peak = max(hours.items(), key=lambda kv: (kv[1], -kv[0]), default=(None, 0))
    top = [ListedAlarm(a, *about[a], count=n, value=n / activations)
           for a, n in per_alarm.most_common(10)]

    return AlarmReport(
        since=since, now=now, covered_from=covered_from, activations=activations,
        new_incidents=sum(1 for r in rows if r[4] == "activated"),
        per_hour=activations / (span / 3600.0) if span >= 3600.0 else None,
        per_day=activations / (span / 86400.0) if span >= 86400.0 else None,
        peak_hour=peak, peak_hour_start=peak_start,
        priority_mix=dict(sorted(Counter(r[3] for r in rows).items())),
        top=top,
        floods=(floods := _floods(conn, since, now)),
        flood_seconds=sum((f.ended if f.ended is not None else now) - max(f.started, since)
                          for f in floods),
        chattering=_chattering(conn, since, now),
        stale=_stale(conn, now, stale_after),
        operator_actions=_operator_actions(conn, since, now),
        stale_after=stale_after,
        current=_current(conn),
        hourly=sorted(hours.items()),
        active=_active(conn),
        timezone=timezone if tz is not dt.UTC else "UTC",
    )


def _zone(name: str) -> dt.tzinfo:
    """The site's zone; UTC if it cannot be loaded (the report then says UTC)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _hour_start(ts: float, tz: dt.tzinfo) -> float:
    """Start of the site-clock hour holding ``ts`` (zones with half-hour offsets included)."""
    local = dt.datetime.fromtimestamp(ts, tz)
    return local.replace(minute=0, second=0, microsecond=0).timestamp()


def _floods(conn: sqlite3.Connection, since: float, now: float) -> list[FloodSummary]:
    starts: dict[str, float] = {}
    ends: dict[str, tuple[float, dict[str, Any]]] = {}
    for ts, incident, transition, body in conn.execute(
            "SELECT ts, incident_id, transition, body FROM events WHERE transition IN "
            "('flood_started', 'flood_ended') AND ts <= ? ORDER BY seq", (now,)):
        if transition == "flood_started":
            starts[incident] = ts
        else:
            ends[incident] = (ts, json.loads(body).get("evidence", {}))
    out = []
    for flood_id, started in starts.items():
        ended, evidence = ends.get(flood_id, (None, {}))
        if ended is not None and ended < since:
            continue
        out.append(FloodSummary(flood_id, started, ended, int(evidence.get("new_alarms", 0)),
                                int(evidence.get("grouped", 0))))
    return out


def _chattering(conn: sqlite3.Connection, since: float, now: float) -> list[ListedAlarm]:
    rows = conn.execute(
        "SELECT alarm_id, category, priority, COUNT(*) AS n FROM events "
        "WHERE transition = 'chattering' AND ts >= ? AND ts <= ? "
        "GROUP BY alarm_id ORDER BY n DESC, alarm_id", (since, now)).fetchall()
    return [ListedAlarm(a, c, p, count=n) for a, c, p, n in rows]


def _stale(conn: sqlite3.Connection, now: float, stale_after: float) -> list[ListedAlarm]:
    out = []
    for (body,) in conn.execute("SELECT body FROM alarms"):
        rec = json.loads(body)
        if rec.get("condition") and now - float(rec.get("condition_since", now)) > stale_after:
            out.append(ListedAlarm(rec["alarm_id"], rec["category"], rec["priority"],
                                   count=int(rec.get("occurrences", 1)),
                                   value=now - float(rec["condition_since"])))
    return sorted(out, key=lambda a: (-a.value, a.alarm_id))


def _operator_actions(conn: sqlite3.Connection, since: float, now: float) -> dict[str, int]:
    marks = ",".join("?" * len(_OPERATOR_ACTIONS))
    rows = conn.execute(
        f"SELECT transition, COUNT(*) FROM events WHERE ts >= ? AND ts <= ? "
        f"AND transition IN ({marks}) GROUP BY transition ORDER BY transition",
        (since, now, *_OPERATOR_ACTIONS)).fetchall()
    return {t: n for t, n in rows}


def _active(conn: sqlite3.Connection) -> list[ActiveAlarm]:
    out = []
    for (body,) in conn.execute("SELECT body FROM alarms"):
        rec = AlarmRecord.from_json(json.loads(body))
        state = rec.lifecycle.value
        if state == "normal":
            continue
        out.append(ActiveAlarm(rec.alarm_id, rec.priority, rec.category, state, rec.condition,
                               rec.activated_at, rec.message_zh, rec.message_en))
    return sorted(out, key=lambda a: (a.priority, a.since, a.alarm_id))


def _current(conn: sqlite3.Connection) -> dict[str, int]:
    states: Counter[str] = Counter()
    for (body,) in conn.execute("SELECT body FROM alarms"):
        states[AlarmRecord.from_json(json.loads(body)).lifecycle.value] += 1
    return dict(sorted(states.items()))


def render_report(report: AlarmReport, *, site: str = "") -> str:
    """The report as text for a terminal (ISA-18.2 / EEMUA 191 guidance in brackets), times in
    the site's zone with their UTC offset."""
    tz = _zone(report.timezone)

    def when(ts: float) -> str:
        return _stamp(ts, tz)

    span = _duration(report.span)
    lines = [f"alarm report{' for ' + site if site else ''}: {when(report.since)} .. "
             f"{when(report.now)} ({report.timezone})"]
    if report.covered_from > report.since:
        lines.append(f"  (the journal starts at {when(report.covered_from)}: the report covers "
                     f"{span})")
    counted = (f"{report.activations} in {span}" if report.span > 0
               else "no alarm in the journal yet")
    per_hour = (f"{report.per_hour:.2f}" if report.per_hour is not None
                else f"-  (needs an hour of journal; {counted})")
    per_day = (f"{report.per_day:.1f}" if report.per_day is not None
               else f"-  (needs a day of journal; {counted})")
    lines += [
        "",
        f"alarms (activations)   {report.activations}  ({report.new_incidents} new incidents) "
        f"in the last {span}",
        f"  per hour             {per_hour}  [target <= 6, manageable <= 12]",
        f"  per day              {per_day}  [target <= 150, manageable <= 300]",
        f"  busiest hour         {report.peak_hour}"
        + (f"  ({when(report.peak_hour_start)})" if report.peak_hour_start is not None
           else ""),
    ]
    total = sum(report.priority_mix.values())
    mix = ", ".join(f"{p} {n} ({n / total:.0%})" for p, n in report.priority_mix.items())
    lines.append(f"priority mix           {mix or 'none'}  [about 5% high, 15% medium, "
                 f"80% low]")
    lines.append(f"floods                 {len(report.floods)}, "
                 f"{report.flood_seconds / 60:.1f} min in flood "
                 f"({report.flood_share:.1%} of the time)  [target < 1%]")
    for f in report.floods:
        end = when(f.ended) if f.ended is not None else "still going"
        lines.append(f"  {f.flood_id}: {when(f.started)} .. {end}, {f.new_alarms} new alarms, "
                     f"{f.grouped} grouped")
    lines.append(f"chattering alarms      {len(report.chattering)}  [target 0]")
    lines += [f"  {a.alarm_id} ({a.priority} {a.category}): {a.count} episode(s)"
              for a in report.chattering]
    lines.append(f"stale (active > {report.stale_after / 3600:g} h)  {len(report.stale)}  "
                 f"[target < 5]")
    lines += [f"  {a.alarm_id} ({a.priority} {a.category}): active {a.value / 3600:.1f} h"
              for a in report.stale]
    lines.append("top 10 most frequent")
    lines += [f"  {i:2d}. {a.alarm_id} ({a.priority} {a.category}): {a.count} "
              f"({a.value:.0%})" for i, a in enumerate(report.top, 1)]
    if not report.top:
        lines.append("  none")
    actions = ", ".join(f"{k} {v}" for k, v in report.operator_actions.items())
    lines.append(f"operator actions       {actions or 'none'}")
    current = ", ".join(f"{k} {v}" for k, v in report.current.items())
    lines.append(f"alarms now             {current or 'all normal'}")
    for a in report.active:
        lines.append(f"  {a.priority} {a.alarm_id} ({a.category}): {a.state.replace('_', ' ')} "
                     f"since {when(a.since)} ({_duration(report.now - a.since)})"
                     f"{'' if a.condition else ', condition over'}: {a.message_en}")
    return "\n".join(lines)


def _stamp(ts: float, tz: dt.tzinfo) -> str:
    """``2026-12-06 01:30+08:00``: the site's clock, and how it relates to UTC."""
    local = dt.datetime.fromtimestamp(ts, tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M}{offset[:3]}:{offset[3:]}"


def _duration(seconds: float) -> str:
    """A span as a person says it: 45 s, 1.5 min, 3.0 h, 7.0 days."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
