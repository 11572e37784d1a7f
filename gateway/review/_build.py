"""One incident's review: the work order's versions and the alarm journal, merged into one
timeline in the site's time zone, with a verdict for each response window.

The review only reads: the work-order history (every version the desk emitted) and the alarm
journal (every transition and operator action, with the user). The verdicts follow the desk's
own rules: any answer from the platform ends the acknowledge window, on site or resolved ends
the on-site window, resolved ends the resolution window; where the desk recorded a breach, its
``late_by_s`` is the figure given (the desk may have measured it on the monotonic clock).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from gateway.alarms import AlarmEvent, AlarmJournal
from gateway.config import GatewayConfig
from gateway.i18n import category_title, format_location
from gateway.review._labels import CONSOLE_EVENT, EVENT, ROLE, TRANSITION, WINDOW, local_iso, text
from gateway.review._model import IncidentReview, TimelineEntry, Window, WindowVerdict
from gateway.workorders import Bilingual, WorkOrder, WorkOrderLog, parse_instant

__all__ = ["build_review", "gather_review", "window_verdicts"]

#: How far before the condition was first detected journal events are looked for (seconds):
#: covers rounding of the stored instants.
_SLACK = 1.0
#: Journal events read per alarm, at most (a chattering alarm's incident can be long).
_MAX_EVENTS = 5000
#: Kinds at the same instant, in the order people expect to read them.
_ORDER = {"detected": 0, "alarm": 1, "work_order": 2, "escalation": 3, "window": 4,
          "operator": 5, "assigned": 6, "platform": 7, "console": 7, "on_site": 8,
          "resolved": 9, "follow_up": 10, "reopened": 11}


async def gather_review(order_id: str, *, worklog: WorkOrderLog, journal: AlarmJournal,
                        config: GatewayConfig, now: float,
                        live: WorkOrder | None = None) -> IncidentReview | None:
    """Read one order's history and its alarms' journal events and build the review.

    Args:
        order_id: The work order's id.
        worklog: The work-order history.
        journal: The alarm journal.
        config: The site config (time zone, name, category titles).
        now: Wall time (the verdict of a window still open depends on it).
        live: The desk's current version, newer than the history's when the history has not
            written it yet.

    Returns:
        None when neither the history nor the desk knows the order.

    Raises:
        WorkOrderLogError: the history cannot be read.
        JournalError: the journal cannot be read.
    """
    history = await worklog.get(order_id)
    versions = list(history.versions) if history is not None else []
    if live is not None and (not versions or live.seq > versions[-1].seq):
        versions.append(live)
    if not versions:
        return None
    latest = versions[-1]
    detected = parse_instant(latest.detected_at)
    events: list[AlarmEvent] = []
    for alarm_id in [latest.alarm_id, *latest.joined_alarms]:
        found = await journal.events(alarm_id=alarm_id, since=detected - _SLACK,
                                     limit=_MAX_EVENTS)
        events += incident_events(found, after=parse_instant(latest.raised_at)
                                  if alarm_id == latest.alarm_id else detected)
    return build_review(versions, events, config=config, now=now)


def incident_events(events: Sequence[AlarmEvent], *, after: float) -> list[AlarmEvent]:
    """The events of the incident that was open at ``after``: the first incident id seen at
    or after that moment (the journal keeps later incidents of the same alarm too)."""
    incident = next((e.incident_id for e in events if e.ts >= after - 0.01 and e.incident_id),
                    None)
    if incident is None:
        return [e for e in events if e.ts >= after - 0.01]
    return [e for e in events if e.incident_id == incident]


def build_review(versions: Sequence[WorkOrder], events: Sequence[AlarmEvent], *,
                 config: GatewayConfig, now: float) -> IncidentReview:
    """The review of one order from its versions (oldest first) and its alarms' events."""
    zone = ZoneInfo(config.site.timezone)
    latest = versions[-1]
    first = versions[0]
    timeline = [_entry(parse_instant(first.detected_at), zone, "detected",
                       text("首次检测到异常", "Condition first detected"), source="work_order",
                       alarm_id=first.alarm_id, evidence=dict(first.evidence))]
    timeline += [_journal_entry(e, zone) for e in events]
    previous: WorkOrder | None = None
    for version in versions:
        timeline.append(_order_entry(version, previous, zone))
        previous = version
    windows = window_verdicts(latest, zone=zone, now=now)
    for verdict, due in zip(windows, _deadlines(latest), strict=True):
        if verdict.verdict in ("breached", "overdue") and due is not None:
            timeline.append(_entry(due, zone, "window", _passed(verdict.window),
                                   source="derived"))
    timeline.sort(key=lambda e: (e.ts, _ORDER[e.kind]))
    closed = latest.resolved_at or latest.rejected_at
    policies = config.work_orders
    location = text(format_location(latest.location, "zh-CN"),
                    format_location(latest.location, "en"))
    return IncidentReview(
        order_id=latest.id, alarm_id=latest.alarm_id, joined_alarms=list(latest.joined_alarms),
        site_id=latest.site_id, site_name=config.site.name, timezone=config.site.timezone,
        category=latest.category,
        category_title=text(category_title(latest.category, "zh-CN", policies),
                            category_title(latest.category, "en", policies)),
        priority=latest.priority, title=latest.title, description=latest.description,
        location=location, device=latest.location.device_name, status=latest.status,
        detected_at=_local(latest.detected_at, zone), raised_at=_local(latest.raised_at, zone),
        closed_at=_local(closed, zone) if closed else None, evidence=_raising_evidence(versions),
        windows=windows, timeline=timeline, versions=len(versions), journal_events=len(events),
        generated_at=local_iso(now, zone))


def window_verdicts(order: WorkOrder, *, zone: ZoneInfo, now: float) -> list[WindowVerdict]:
    """Acknowledge, on-site and resolution windows of ``order``, each with its verdict."""
    # A reopened order's windows count from the reopening (the desk's deadlines do).
    raised = parse_instant(order.reopened_at or order.raised_at)
    recorded: dict[str, float] = {b.window: b.late_by_s for b in order.breaches}
    result: list[WindowVerdict] = []
    names: tuple[Window, ...] = ("acknowledge", "on_site", "resolve")
    for window, due, done_text in zip(names,
                                      _deadlines(order), _done(order), strict=True):
        done = parse_instant(done_text) if done_text else None
        name = WINDOW[window]
        if due is None:
            result.append(WindowVerdict(window=window, name=name, due=None,
                                        done_at=_local(done_text, zone) if done_text else None,
                                        verdict="none", took_s=_took(done, raised),
                                        margin_s=None))
            continue
        if done is not None:
            late = recorded.get(window, done - due)
            verdict = "breached" if window in recorded or late > 0 else "met"
            margin = round(late if verdict == "breached" else due - done, 3)
        elif order.status == "rejected":
            verdict, margin = "none", None
        elif now > due:
            verdict, margin = "overdue", round(now - due, 3)
        else:
            verdict, margin = "pending", round(due - now, 3)
        result.append(WindowVerdict(window=window, name=name, due=local_iso(due, zone),
                                    done_at=local_iso(done, zone) if done is not None else None,
                                    verdict=verdict, took_s=_took(done, raised),
                                    margin_s=margin))
    return result


def _raising_evidence(versions: Sequence[WorkOrder]) -> dict[str, bool | int | float | str | None]:
    """The readings that raised the alarm, and those of alarms that joined the order (later
    versions carry the readings of the alarm's end too, which raised nothing)."""
    evidence = dict(versions[0].evidence)
    for version in versions[1:]:
        if version.event == "alarm_joined":
            evidence.update(version.evidence)
    return evidence


def _deadlines(order: WorkOrder) -> tuple[float | None, float | None, float | None]:
    return (_instant(order.acknowledge_by), _instant(order.respond_by),
            _instant(order.resolve_by))


def _done(order: WorkOrder) -> tuple[str | None, str | None, str | None]:
    """When each window ended, as the desk counts it: any answer ends the acknowledge window,
    on site or resolved the on-site window."""
    acknowledged = order.acknowledged_at or order.on_site_at or order.resolved_at
    return acknowledged, order.on_site_at or order.resolved_at, order.resolved_at


def _took(done: float | None, raised: float) -> float | None:
    return round(done - raised, 3) if done is not None else None


def _instant(value: str | None) -> float | None:
    return parse_instant(value) if value else None


def _local(value: str, zone: ZoneInfo) -> str:
    return local_iso(parse_instant(value), zone)


def _passed(window: Window) -> Bilingual:
    name = WINDOW[window]
    return text(f"{name.zh}已到，未达成", f"{name.en} ended unmet")


def _journal_entry(event: AlarmEvent, zone: ZoneInfo) -> TimelineEntry:
    transition = event.transition.value if event.transition is not None else event.state.value
    what = TRANSITION.get(transition, text(transition, transition))
    operator = event.actor not in ("", "system")
    activation = transition in ("activated", "reactivated")
    return _entry(event.ts, zone, "operator" if operator else "alarm", what,
                  actor=event.actor if operator else None, detail=event.reason or None,
                  source="journal", alarm_id=event.alarm_id,
                  evidence=dict(event.evidence) if activation else {})


def _order_entry(order: WorkOrder, previous: WorkOrder | None, zone: ZoneInfo) -> TimelineEntry:
    event = order.event
    at = parse_instant(order.updated_at)
    if event == "raised" and order.escalation is not None:
        step = order.escalation
        what = text(f"工单生成并上报，通知第 1/{step.levels} 级：{step.name.zh}",
                    f"Work order raised and sent upstream; level 1/{step.levels}: "
                    f"{step.name.en} notified")
        return _entry(at, zone, "work_order", what, source="work_order")
    if event == "escalated" and order.escalation is not None:
        step = order.escalation
        if step.escalated_at:
            at = parse_instant(step.escalated_at)
        what = text(f"未确认，升级至第 {step.level}/{step.levels} 级：{step.name.zh}",
                    f"Not acknowledged: escalated to level {step.level}/{step.levels}: "
                    f"{step.name.en}")
        return _entry(at, zone, "escalation", what, source="work_order")
    if event in ("acknowledged", "on_site", "resolved", "rejected"):
        stamp = getattr(order, f"{event}_at")
        console = order.status_via == "console"
        kind = {"on_site": "on_site", "resolved": "resolved"}.get(
            event, "console" if console else "platform")
        return _entry(parse_instant(stamp) if stamp else at, zone, kind,
                      CONSOLE_EVENT[event] if console else EVENT[event],
                      actor=order.status_by, detail=order.status_note, source="work_order")
    if event == "assigned" and order.assigned_to is not None:
        to = order.assigned_to
        role = ROLE.get(to.role, text(to.role, to.role)) if to.role else None
        zh = " / ".join(x for x in (role.zh if role else None, to.person) if x)
        en = " / ".join(x for x in (role.en if role else None, to.person) if x)
        return _entry(parse_instant(to.at), zone, "assigned",
                      text(f"派单：{zh}", f"Dispatched to {en}"), actor=to.by, detail=to.note,
                      source="work_order")
    if event in ("followed_up", "reopened") and order.follow_ups:
        call = order.follow_ups[-1]
        if event == "reopened":
            what = text(f"回访不满意，工单重新打开（第 {order.reopened_count} 次），"
                        f"时限与升级重新计时",
                        f"Follow-up: unsatisfied; order reopened ({order.reopened_count}), "
                        f"windows and escalation start again")
        elif call.reached:
            what = text("回访：满意，工单关闭", "Follow-up: satisfied; order closed")
        else:
            since = parse_instant(order.resolved_at) if order.resolved_at else 0.0
            attempt = sum(1 for f in order.follow_ups
                          if not f.reached and parse_instant(f.at) >= since)
            what = text(f"回访：未联系上（第 {attempt} 次）",
                        f"Follow-up: not reached (attempt {attempt})")
        return _entry(parse_instant(call.at), zone,
                      "reopened" if event == "reopened" else "follow_up", what, actor=call.by,
                      detail=call.comment, source="work_order")
    if event == "alarm_cleared":
        return _entry(at, zone, "work_order", EVENT[event], actor=order.alarm_reset_by,
                      detail=order.alarm_reset_note, source="work_order")
    if event == "alarm_joined" and previous is not None:
        added = [a for a in order.joined_alarms if a not in previous.joined_alarms]
        return _entry(at, zone, "work_order", EVENT[event], detail=", ".join(added) or None,
                      source="work_order")
    return _entry(at, zone, "work_order", EVENT.get(event, text(event, event)),
                  source="work_order")


def _millis(ts: float) -> float:
    """``ts`` cut to the millisecond, as the work order's ISO times are: the journal's event
    and the order it raised then compare equal and sort by kind, not by a rounding."""
    return math.floor(ts * 1000.0 + 1e-3) / 1000.0  # + 1e-3 ms: a float just below a whole ms


def _entry(ts: float, zone: ZoneInfo, kind: str, what: Bilingual, *, source: str,
           actor: str | None = None, detail: str | None = None, alarm_id: str | None = None,
           evidence: dict[str, bool | int | float | str | None] | None = None
           ) -> TimelineEntry:
    return TimelineEntry.model_validate({
        "ts": _millis(ts), "at": local_iso(ts, zone), "kind": kind, "what": what,
        "actor": actor, "detail": detail, "source": source, "alarm_id": alarm_id,
        "evidence": evidence or {}})
