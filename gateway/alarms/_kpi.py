"""Alarm-system KPIs (ISA-18.2 §16, EEMUA 191) computed from the alarm journal.

Everything is read from the journal's tables, so the same numbers come out of the console (via
:meth:`AlarmJournal.run`) and of ``propgw alarms report`` (a read-only connection).

An *alarm* here is an activation: a new incident or a repeat while its incident is open,
announced or not (a shelved or grouped activation still counts: it happened).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.alarms._lifecycle_state import AlarmRecord

__all__ = ["AlarmReport", "FloodSummary", "ListedAlarm", "alarm_report", "render_report"]

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
class FloodSummary:
    flood_id: str
    started: float
    ended: float | None
    new_alarms: int
    grouped: int


@dataclass(frozen=True)
class AlarmReport:
    """KPIs over ``[since, now]``; averages use the part of it the journal covers."""

    since: float
    now: float
    #: Start of the covered period: ``since``, or the oldest journal entry if later.
    covered_from: float
    activations: int
    new_incidents: int
    per_hour: float
    per_day: float
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
    #: Activations per hour: (start of the hour, epoch seconds; count), oldest first; hours
    #: without any are left out.
    hourly: list[tuple[float, int]] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return max(self.now - self.covered_from, 0.0) / 3600.0

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
                 stale_after: float = 86400.0) -> AlarmReport:
    """Compute the KPIs from a journal connection (read only)."""
    oldest = conn.execute("SELECT MIN(ts) FROM events").fetchone()[0]
    covered_from = max(since, oldest) if oldest is not None else now
    # Rates over less than an hour are not extrapolated: 4 alarms in the journal's first
    # 3 seconds are 4 per hour, not 4,800.
    span_h = max(now - covered_from, 3600.0) / 3600.0

    marks = ",".join("?" * len(_ACTIVATIONS))
    rows = conn.execute(
        f"SELECT ts, alarm_id, category, priority, transition FROM events "
        f"WHERE ts >= ? AND ts <= ? AND transition IN ({marks}) ORDER BY seq",
        (since, now, *_ACTIVATIONS)).fetchall()
    activations = len(rows)
    per_alarm = Counter(r[1] for r in rows)
    about = {r[1]: (r[2], r[3]) for r in rows}
    hours = Counter(math.floor(r[0] / 3600.0) for r in rows)
    peak_bucket, peak = max(hours.items(), key=lambda kv: (kv[1], -kv[0]), default=(None, 0))
    top = [ListedAlarm(a, *about[a], count=n, value=n / activations)
           for a, n in per_alarm.most_common(10)]

    return AlarmReport(
        since=since, now=now, covered_from=covered_from, activations=activations,
        new_incidents=sum(1 for r in rows if r[4] == "activated"),
        per_hour=activations / span_h, per_day=activations / span_h * 24.0,
        peak_hour=peak, peak_hour_start=None if peak_bucket is None else peak_bucket * 3600.0,
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
        hourly=[(bucket * 3600.0, n) for bucket, n in sorted(hours.items())],
    )


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


def _current(conn: sqlite3.Connection) -> dict[str, int]:
    states: Counter[str] = Counter()
    for (body,) in conn.execute("SELECT body FROM alarms"):
        states[AlarmRecord.from_json(json.loads(body)).lifecycle.value] += 1
    return dict(sorted(states.items()))


def render_report(report: AlarmReport, *, site: str = "") -> str:
    """The report as text for a terminal (ISA-18.2 / EEMUA 191 guidance in brackets)."""
    def when(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

    lines = [f"alarm report{' for ' + site if site else ''}: {when(report.since)} .. "
             f"{when(report.now)}"]
    if report.covered_from > report.since:
        lines.append(f"  (the journal starts at {when(report.covered_from)}; averages use "
                     f"{report.hours:.1f} h)")
    lines += [
        "",
        f"alarms (activations)   {report.activations}  ({report.new_incidents} new incidents)",
        f"  per hour             {report.per_hour:.2f}  [target <= 6, manageable <= 12]",
        f"  per day              {report.per_day:.1f}  [target <= 150, manageable <= 300]",
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
    return "\n".join(lines)
