"""Turns alarm events into work orders and walks them up their escalation ladder.

One work order per incident (an alarm's active period): later activity on the incident — the
alarm clearing, an escalation, a reminder, the platform's answers — goes out as an update with the
same ``id`` and the next ``seq``. Windows and ladders come from ``work_orders`` in the config
(defaults: docs/facility-rules.md#response-windows).

Windows are measured on the monotonic clock from the moment the alarm was confirmed, so a wall
clock stepped by NTP neither escalates every order at once nor holds a trapped passenger's order
back. The ISO instants the platform receives (``respond_by``, ``escalation.deadline``, every
``*_at``) are wall time read when they were computed: labels, which may show a step. A restart
is the one moment monotonic time does not carry over: a restored order's age is then read off
the wall clock against its saved ``raised_at`` (never below zero). All of it runs on the
injected clock, so tests walk a 30-minute ladder in milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from gateway.aio import first_of
from gateway.alarms import AlarmEvent, AlarmState, Transition
from gateway.clock import Clock
from gateway.config import DEFAULT_PRIORITY_POLICIES, ResponsePolicy, SiteConfig, WorkOrdersConfig
from gateway.errors import StatusRefused, WorkOrderActionRefused
from gateway.i18n import category_title
from gateway.logs import priority_level
from gateway.workorders._model import (
    CLOSED_STATUSES,
    Assignment,
    Bilingual,
    Escalation,
    FollowUp,
    SlaBreach,
    StatusAnswer,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderLocation,
    answer_time,
)
from gateway.workorders._reports import NewReport

__all__ = ["RESPONSE_WINDOWS", "EdgeStatus", "WorkOrderDesk", "WorkOrderSink"]

log = logging.getLogger(__name__)

#: Namespace of report order ids made from a client's Idempotency-Key (uuid5).
_REPORT_KEYS = uuid.UUID("6f1d2c1e-4b3a-5e7f-9a80-7d0c3b2a1e55")

WorkOrderSink = Callable[[WorkOrder], Awaitable[None]]

#: Default on-site windows (seconds from raising a work order to ``respond_by``), by priority.
RESPONSE_WINDOWS: dict[str, float] = {
    p: float(policy["on_site_within"]) for p, policy in DEFAULT_PRIORITY_POLICIES.items()}

_PROGRESS = {"open": 0, "alarm_cleared": 0, "acknowledged": 1, "on_site": 2, "resolved": 3,
             "rejected": 3}
_WAITING = frozenset({"open", "alarm_cleared"})
Priority = Literal["P0", "P1", "P2", "P3"]
#: What an operator at the edge may record (rejecting is the platform's answer only).
EdgeStatus = Literal["acknowledged", "on_site", "resolved"]


@dataclass
class _Tracked:
    order: WorkOrder
    policy: ResponsePolicy
    #: Wall time of raising: what the ISO deadlines are computed from (labels only).
    raised: float
    #: Monotonic time of raising: every window is counted from here.
    mono: float
    #: Monotonic time the follow-up falls due, once resolved with a follow-up window.
    follow_up_due: float | None = None
    #: The follow_up_due reminder went out; the order stays until its follow-up is recorded.
    follow_up_sent: bool = False
    pre_alerts_sent: int = 0
    unacknowledged_sent: bool = False
    #: Restored from the outbox after a restart: the alarm engine no longer knows its alarm.
    restored: bool = False
    #: Alarms that hold this order open (its own and joined ones): their condition holds, or
    #: it ended on a latching rule and nobody has reset the alarm yet.
    active_alarms: set[str] = field(default_factory=set)
    #: Those of ``active_alarms`` whose condition ended and that wait for a reset (latched).
    latched_alarms: set[str] = field(default_factory=set)

    @property
    def latched(self) -> bool:
        """Whether every alarm holding the order is latched: nothing is active any more, but
        the order must not read as cleared before someone resets the alarms."""
        return bool(self.active_alarms) and self.active_alarms <= self.latched_alarms


class WorkOrderDesk:
    """Keeps the open work orders, emits new ones and their updates, escalates on deadlines.

    Args:
        site: The site the orders belong to.
        clock: Time source for timestamps and deadlines.
        sink: Called with every new order and update, in order; returns once it is durable.
        policies: Which alarms make orders, windows and ladders; default the built-in ones.
    """

    def __init__(self, site: SiteConfig, clock: Clock, sink: WorkOrderSink, *,
                 policies: WorkOrdersConfig | None = None) -> None:
        self._site = site
        self._clock = clock
        self._sink = sink
        self._policies = policies or WorkOrdersConfig()
        self._orders: dict[str, _Tracked] = {}
        self._by_alarm: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def open_orders(self) -> list[WorkOrder]:
        """Orders still tracked: not closed, or waiting for their follow-up reminder."""
        return [t.order for t in self._orders.values()]

    def get(self, order_id: str) -> WorkOrder | None:
        """The latest version of a tracked order."""
        tracked = self._orders.get(order_id)
        return tracked.order if tracked else None

    def order_for_alarm(self, alarm_id: str) -> WorkOrder | None:
        """The latest version of the tracked order an alarm raised or joined, if any."""
        tracked = self._orders.get(self._by_alarm.get(alarm_id, ""))
        return tracked.order if tracked else None

    def tracks(self, order_id: str) -> bool:
        """Whether the desk still has work to do for this order (escalation, reminders)."""
        return order_id in self._orders

    # ------------------------------------------------------------------ inputs

    async def handle(self, event: AlarmEvent) -> WorkOrder | None:
        """Apply one alarm event; returns the work order sent, if any."""
        resolved = self._policies.policy(event.category, event.priority)
        if not event.work_order or resolved is None:
            return None
        priority, policy = resolved
        async with self._lock:
            current = self._orders.get(self._by_alarm.get(event.alarm_id, ""))
            if event.state is AlarmState.ACTIVE:
                if current is not None and current.restored and current.order.alarm_active \
                        and current.order.status not in CLOSED_STATUSES:
                    # The platform holds an open order whose alarm, as far as it knows, never
                    # ended, and the alarm is active now: the same incident. (The alarm journal
                    # could not say so: it was lost, unreadable or refused writes.)
                    current.restored = False
                    current.active_alarms.add(event.alarm_id)
                    log.warning("work order %s: alarm %s is active after a restart that lost "
                                "its alarm history; the order carries on (no second order)",
                                current.order.id, event.alarm_id)
                    if not current.order.alarm_latched:
                        return None
                    # It went out latched before the restart: it no longer is.
                    order = self._update(current, "alarm_reactivated", _iso(event.ts),
                                         alarm_latched=False,
                                         evidence={**current.order.evidence, **event.evidence})
                    await self._emit(order)
                    return order
                if current is not None and not current.restored and current.order.alarm_active:
                    # The same incident still holds the order: no second order. Its alarm holds
                    # it again (an alarm reset while a joined one kept the order open, or a
                    # latched one whose condition came back).
                    held = self._hold(current, event)
                    if held is None:
                        return None
                    await self._emit(held)
                    log.info("work order %s: alarm %s is active again", held.id,
                             event.alarm_id)
                    return held
                sibling = self._open_order_for(event)
                if sibling is not None:
                    order = self._join(sibling, event)
                    await self._emit(order)
                    log.info("work order %s: alarm %s joined it", order.id, event.alarm_id)
                    return order
                related = current.order.id if current is not None else None
                tracked = self._new_order(event, cast(Priority, priority), policy, related)
                if tracked.order.id in self._orders:
                    return None  # the same event again (replayed after a restart)
                self._orders[tracked.order.id] = tracked
                self._by_alarm[event.alarm_id] = tracked.order.id
                tracked.active_alarms.add(event.alarm_id)
                order = tracked.order
            else:
                if current is None or not current.order.alarm_active:
                    return None
                ended = self._ended(current, event)
                if ended is None:
                    return None
                order = ended
            await self._emit(order)
            if order.seq == 1:
                # Logged once the sink has it (on disk, when the sink is the outbox).
                log.log(priority_level(order.priority), "work order %s raised (%s %s, respond "
                        "by %s): %s", order.id, order.priority, order.category,
                        order.respond_by, order.title.en, extra={"priority": order.priority})
            elif order.event == "alarm_cleared":
                log.info("work order %s: alarm %s cleared%s", order.id, event.alarm_id,
                         f" (reset by {order.alarm_reset_by})" if order.alarm_reset_by else "")
            return order

    async def apply_status(self, order_id: str, answer: StatusAnswer) -> WorkOrder | None:
        """Apply the platform's answer about ``order_id``.

        An ``at`` up to ``STATUS_SKEW`` (300) seconds ahead of the gateway's clock, or before the
        order was raised, is taken as clock skew and clamped into [raised_at, now]; further
        out it cannot be true, and the answer is refused rather than breaches being computed
        from it.

        Returns:
            The order after the answer (unchanged when the answer is old news), or None when
            the desk does not know the order.

        Raises:
            StatusRefused: ``answer.at`` lies too far ahead or before the order was raised.
        """
        async with self._lock:
            tracked = self._orders.get(order_id)
            if tracked is None:
                log.warning("status %s for unknown or closed work order %s ignored",
                            answer.status, order_id)
                return None
            order = tracked.order
            new = answer.status
            now = self._clock.time()
            at = now
            if answer.at is not None:
                try:
                    at = answer_time(answer.at, now=now, raised=tracked.raised)
                except ValueError as exc:
                    log.warning("work order %s: status %s refused: %s", order_id, new, exc)
                    raise StatusRefused(order_id=order_id, reason=str(exc)) from None
            if order.status in CLOSED_STATUSES or _PROGRESS[new] <= _PROGRESS[order.status]:
                log.info("work order %s: status %s ignored (already %s)", order_id, new,
                         order.status)
                return order
            return await self._progress(tracked, new, at, stated=answer.at is not None,
                                        by=answer.by, note=answer.note, via="platform")

    async def record_status(self, order_id: str, status: EdgeStatus, *, by: str,
                            note: str | None = None) -> WorkOrder:
        """An operator at the edge records acknowledged, on site or resolved: exactly what
        the platform's answer would do (breaches, follow-up), with ``status_via`` console
        and ``status_by`` the operator.

        Raises:
            WorkOrderActionRefused: the desk does not track the order, or it is already at
                or past ``status``.
        """
        async with self._lock:
            tracked = self._tracked(order_id, f"record {status}")
            order = tracked.order
            if order.status in CLOSED_STATUSES or _PROGRESS[status] <= _PROGRESS[order.status]:
                allowed = [s for s, rank in _PROGRESS.items()
                           if rank < _PROGRESS[status] and s not in CLOSED_STATUSES]
                raise WorkOrderActionRefused(
                    order_id=order_id,
                    reason=f"it is {order.status}; recording {status} needs it "
                           f"{' or '.join(allowed)}")
            return await self._progress(tracked, status, self._clock.time(), stated=False,
                                        by=by, note=note, via="console")

    async def assign(self, order_id: str, *, by: str, role: str | None = None,
                     person: str | None = None, note: str | None = None) -> WorkOrder:
        """Dispatch the order (派单) to a role, a named person or both. The ladder goes on:
        an assignment is not an acknowledgement.

        Raises:
            WorkOrderActionRefused: the desk does not track the order, or it is resolved.
        """
        async with self._lock:
            tracked = self._tracked(order_id, "assign")
            if tracked.order.status in CLOSED_STATUSES:
                raise WorkOrderActionRefused(
                    order_id=order_id, reason=f"it is {tracked.order.status}; assigning needs "
                                              f"an order that is not resolved yet")
            now = self._clock.time()
            assignment = Assignment(role=role, person=person, note=note, by=by, at=_iso(now))
            order = self._update(tracked, "assigned", _iso(now), assigned_to=assignment)
            log.info("work order %s assigned to %s by %s", order_id,
                     " / ".join(x for x in (role, person) if x), by)
            await self._emit(order)
            return order

    async def record_follow_up(self, order_id: str, *, by: str, reached: bool,
                               satisfied: bool | None = None,
                               comment: str | None = None) -> WorkOrder:
        """Record a follow-up call (回访) of a resolved order, due or not yet due.

        Reached and satisfied: the order is closed for good (the desk forgets it). Reached
        and unsatisfied: the order is reopened (status open, its windows and ladder counted
        again from now). Not reached: it stays due; each attempt is kept in ``follow_ups``.

        Raises:
            WorkOrderActionRefused: the desk does not track the order, or it is not resolved
                with a follow-up due.
            pydantic.ValidationError: reached without satisfied, or satisfied without reached.
        """
        async with self._lock:
            tracked = self._tracked(order_id, "record a follow-up")
            order = tracked.order
            if order.status != "resolved" or order.follow_up_by is None:
                raise WorkOrderActionRefused(
                    order_id=order_id,
                    reason=f"it is {order.status}"
                           f"{'' if order.status != 'resolved' else ' with no follow-up'}; a "
                           f"follow-up needs a resolved order with a follow-up (follow_up_by)")
            now = self._clock.time()
            entry = FollowUp(at=_iso(now), by=by, reached=reached, satisfied=satisfied,
                             comment=comment)
            follow_ups = [*order.follow_ups, entry]
            if reached and not satisfied:
                order = self._reopen(tracked, now, by=by, follow_ups=follow_ups)
                log.warning("work order %s reopened by %s: the follow-up found the reporter "
                            "unsatisfied", order_id, by)
            else:
                order = self._update(tracked, "followed_up", _iso(now), follow_ups=follow_ups)
                if reached:
                    log.info("work order %s closed: followed up by %s, satisfied", order_id, by)
                    self._forget(order_id)
                else:
                    log.info("work order %s: follow-up by %s reached nobody (attempt %d); it "
                             "stays due", order_id, by, len(follow_ups))
            await self._emit(order)
            return order

    def follow_ups(self) -> list[WorkOrder]:
        """Resolved orders waiting for their follow-up (due or not yet), latest versions."""
        return [t.order for t in self._orders.values()
                if t.order.status == "resolved" and t.order.follow_up_by is not None]

    def restore(self, orders: Iterable[WorkOrder]) -> int:
        """Track orders saved before a restart, so their ladders and reminders go on.

        Returns:
            How many were taken back (those past ``forget_after`` are not).
        """
        now = self._clock.time()
        count = 0
        for order in orders:
            resolved = (order.priority, self._policies.report_policy(
                order.category, order.priority)) if order.source == "report" \
                else self._policies.policy(order.category, order.priority)
            # A reopened order counts its windows and ladder from the reopening.
            raised = _parse(order.reopened_at or order.raised_at)
            if resolved is None or now - raised >= self._policies.forget_after \
                    or order.id in self._orders:
                continue
            policy = resolved[1]
            updated = _parse(order.updated_at)
            follow_up_by = _parse(order.follow_up_by) if order.follow_up_by else None
            # What fell due before the last update went out with it (or was superseded by it).
            tracked = _Tracked(
                order=order, policy=policy, raised=raised, restored=True,
                mono=min(self._mono_of(raised), self._clock.monotonic()),
                follow_up_due=None if follow_up_by is None else self._mono_of(follow_up_by),
                follow_up_sent=follow_up_by is not None and follow_up_by <= updated,
                pre_alerts_sent=sum(1 for p in policy.pre_alerts if raised + p <= updated),
                unacknowledged_sent=order.event == "unacknowledged")
            self._orders[order.id] = tracked
            for alarm_id in (order.alarm_id, *order.joined_alarms):
                self._by_alarm.setdefault(alarm_id, order.id)
            count += 1
        if count:
            log.info("work orders: %d open order(s) restored", count)
            self._changed.set()
        return count

    async def open_report(self, report: NewReport, *, key: str | None = None) -> WorkOrder:
        """Raise a work order for a graded report; its windows and ladder count from now.

        ``key`` (a client's ``Idempotency-Key``) makes a retry harmless: while the order it
        raised is open, the same key returns that order instead of raising a second one.
        """
        priority, policy = report.priority, self._policies.report_policy(report.category,
                                                                         report.priority)
        async with self._lock:
            order_id = str(uuid.uuid4()) if key is None else str(
                uuid.uuid5(_REPORT_KEYS, f"{self._site.id}/{self._site.gateway_id}/{key}"))
            known = self._orders.get(order_id)
            if known is not None:
                return known.order
            raised, mono = self._clock.time(), self._clock.monotonic()
            first = policy.ladder[0]
            order = WorkOrder(
                id=order_id, seq=1, site_id=self._site.id, gateway_id=self._site.gateway_id,
                source="report", alarm_id=f"report:{order_id}", rule_id="report",
                category=report.category, priority=priority, status="open",
                event="raised", alarm_active=False, title=report.title,
                description=report.description, location=report.location, evidence={},
                detected_at=_iso(raised), raised_at=_iso(raised),
                respond_by=_iso(raised + policy.on_site_within),
                acknowledge_by=_iso(raised + first.within),
                resolve_by=_iso(raised + policy.resolve_within)
                if policy.resolve_within else None,
                escalation=Escalation(level=1, levels=len(policy.ladder), role=first.role,
                                      name=Bilingual(zh=first.name.zh, en=first.name.en),
                                      deadline=_iso(raised + first.within)),
                report=report.details, updated_at=_iso(raised))
            self._orders[order_id] = _Tracked(order=order, policy=policy, raised=raised,
                                              mono=mono)
            await self._emit(order)
            # No reporter or contact here: log lines leave the gateway (journald, shipping).
            log.log(priority_level(order.priority), "work order %s raised from a report (%s %s, "
                    "%s, logged by %s%s, respond by %s): %s", order.id, order.priority,
                    order.category, report.details.channel, report.details.operator,
                    f", priority changed from {report.details.priority_override.graded}"
                    if report.details.priority_override else "", order.respond_by,
                    order.title.en, extra={"priority": order.priority})
            return order

    # ------------------------------------------------------------------ timers

    async def run(self) -> None:
        """Escalate, remind and forget on deadlines; runs until cancelled."""
        while True:
            self._changed.clear()
            due = min((d for t in self._orders.values() if (d := self._next_due(t)) is not None),
                      default=None)
            now = self._clock.monotonic()
            if due is None or due > now:
                await self._wait(None if due is None else due - now)
                continue
            async with self._lock:
                for order_id in list(self._orders):
                    await self._fire(order_id)

    async def _wait(self, delay: float | None) -> None:
        """Until ``delay`` passes on the monotonic clock or an order changes."""
        if delay is None:
            await self._changed.wait()
        else:
            await first_of(self._changed.wait(),
                           self._clock.sleep_until(self._clock.monotonic() + delay))

    def _next_due(self, t: _Tracked) -> float | None:
        """The monotonic time of this order's next update."""
        order, policy = t.order, t.policy
        due = [t.mono + self._policies.forget_after]
        if order.status in _WAITING and order.escalation is not None and (
                order.escalation.level < len(policy.ladder) or not t.unacknowledged_sent):
            due.append(t.mono + policy.ladder[order.escalation.level - 1].within)
        if order.status not in CLOSED_STATUSES and t.pre_alerts_sent < len(policy.pre_alerts):
            due.append(t.mono + policy.pre_alerts[t.pre_alerts_sent])
        if order.status == "resolved" and t.follow_up_due is not None and not t.follow_up_sent:
            due.append(t.follow_up_due)
        return min(due)

    async def _fire(self, order_id: str) -> None:
        """Send every update of this order that has fallen due, oldest reason first."""
        while (t := self._orders.get(order_id)) is not None:
            # Deadlines compare monotonic times; `now` only labels the updates.
            mono, now = self._clock.monotonic(), self._clock.time()
            order, policy = t.order, t.policy
            # Same arithmetic as _next_due, so a deadline that is due here is due there too.
            if t.mono + self._policies.forget_after <= mono:
                log.info("work order %s forgotten after %.0f h (status %s)", order_id,
                         (mono - t.mono) / 3600, order.status)
                self._forget(order_id)
                return
            update: WorkOrder | None = None
            if order.status in _WAITING and order.escalation is not None:
                passed = sum(1 for step in policy.ladder if t.mono + step.within <= mono)
                target = min(passed + 1, len(policy.ladder))
                if target > order.escalation.level:
                    update = self._escalate(t, target, now)
                elif passed == len(policy.ladder) and not t.unacknowledged_sent:
                    t.unacknowledged_sent = True
                    update = self._update(t, "unacknowledged", _iso(now))
                    log.error("work order %s: still unacknowledged at the top of its ladder "
                              "(%s)", order_id, order.escalation.name.en)
            if update is None and order.status not in CLOSED_STATUSES:
                due = sum(1 for p in policy.pre_alerts if t.mono + p <= mono)
                if due > t.pre_alerts_sent:
                    t.pre_alerts_sent = due
                    update = self._update(t, "pre_alert", _iso(now))
                    log.warning("work order %s: pre-alert, resolve by %s", order_id,
                                order.resolve_by)
            if update is None and order.status == "resolved" and not t.follow_up_sent \
                    and t.follow_up_due is not None and t.follow_up_due <= mono:
                # Kept until the follow-up is recorded (or forget_after): the console lists it.
                t.follow_up_sent = True
                update = self._update(t, "follow_up_due", _iso(now))
                log.info("work order %s: follow-up due", order_id)
            if update is None:
                return
            await self._emit(update)

    async def _progress(self, tracked: _Tracked, new: str, at: float, *, stated: bool,
                        by: str | None, note: str | None,
                        via: Literal["platform", "console"]) -> WorkOrder:
        """Move the order forward to ``new`` as of ``at``: breaches, follow-up, send.

        ``stated``: ``at`` is the platform's own time (its clock against the deadlines as
        announced); otherwise the monotonic time since raising measures each window."""
        order, order_id = tracked.order, tracked.order.id
        now = self._clock.time()
        at_iso = _iso(at)
        elapsed = self._clock.monotonic() - tracked.mono

        def late(due_iso: str) -> float:
            if stated:
                return at - _parse(due_iso)
            return elapsed - (_parse(due_iso) - tracked.raised)

        breaches = list(order.breaches)
        if order.status in _WAITING and order.acknowledge_by:
            breaches += _breach("acknowledge", order.acknowledge_by, at,
                                late(order.acknowledge_by))
        if new in ("on_site", "resolved") and order.on_site_at is None:
            breaches += _breach("on_site", order.respond_by, at, late(order.respond_by))
        if new == "resolved" and order.resolve_by:
            breaches += _breach("resolve", order.resolve_by, at, late(order.resolve_by))
        for b in breaches[len(order.breaches):]:
            log.warning("work order %s: %s window missed by %.0fs", order_id, b.window,
                        b.late_by_s)
        changes: dict[str, object] = {f"{new}_at": at_iso, "status_by": by,
                                      "status_note": note, "status_via": via,
                                      "breaches": breaches}
        follow_up = tracked.policy.follow_up_after
        if new == "resolved" and follow_up is not None:
            changes["follow_up_by"] = _iso(at + follow_up)
            changes["follow_up_overdue_at"] = _iso(
                at + follow_up + tracked.policy.follow_up_within)
            tracked.follow_up_due = self._mono_of(at + follow_up)
            tracked.follow_up_sent = False
        order = self._update(tracked, cast(WorkOrderEvent, new), _iso(now), status=new,
                             **changes)
        log.info("work order %s %s%s%s", order_id, new, f" by {by}" if by else "",
                 " (console)" if via == "console" else "")
        if new == "rejected" or (new == "resolved" and follow_up is None):
            self._forget(order_id)
        await self._emit(order)
        return order

    def _reopen(self, t: _Tracked, now: float, *, by: str,
                follow_ups: list[FollowUp]) -> WorkOrder:
        """Open the order again: its windows and ladder count from ``now``; breaches,
        follow-ups and the report are kept (the history keeps every earlier version)."""
        policy, first = t.policy, t.policy.ladder[0]
        t.raised, t.mono = now, self._clock.monotonic()
        t.pre_alerts_sent, t.unacknowledged_sent = 0, False
        t.follow_up_due, t.follow_up_sent = None, False
        return self._update(
            t, "reopened", _iso(now), status="open", follow_ups=follow_ups,
            acknowledged_at=None, on_site_at=None, resolved_at=None, follow_up_by=None,
            follow_up_overdue_at=None, status_by=by, status_note=None, status_via="console",
            respond_by=_iso(now + policy.on_site_within),
            acknowledge_by=_iso(now + first.within),
            resolve_by=_iso(now + policy.resolve_within) if policy.resolve_within else None,
            escalation=Escalation(level=1, levels=len(policy.ladder), role=first.role,
                                  name=Bilingual(zh=first.name.zh, en=first.name.en),
                                  deadline=_iso(now + first.within)),
            reopened_count=t.order.reopened_count + 1, reopened_at=_iso(now))

    def _tracked(self, order_id: str, action: str) -> _Tracked:
        tracked = self._orders.get(order_id)
        if tracked is None:
            raise WorkOrderActionRefused(
                order_id=order_id, unknown=True,
                reason=f"cannot {action}: the gateway does not track this order (unknown, "
                       f"closed, or forgotten after work_orders.forget_after)")
        return tracked

    def _escalate(self, t: _Tracked, level: int, now: float) -> WorkOrder:
        step = t.policy.ladder[level - 1]
        escalation = Escalation(level=level, levels=len(t.policy.ladder), role=step.role,
                                name=Bilingual(zh=step.name.zh, en=step.name.en),
                                deadline=_iso(t.raised + step.within), escalated_at=_iso(now))
        order = self._update(t, "escalated", _iso(now), escalation=escalation)
        log.warning("work order %s escalated to level %d/%d (%s)", order.id, level,
                    escalation.levels, step.name.en)
        return order

    # ------------------------------------------------------------------ helpers

    def _update(self, t: _Tracked, event: WorkOrderEvent, updated_at: str,
                **changes: object) -> WorkOrder:
        order = t.order.model_copy(update={"seq": t.order.seq + 1, "event": event,
                                           "updated_at": updated_at, **changes})
        t.order = order
        return order

    def _ended(self, current: _Tracked, event: AlarmEvent) -> WorkOrder | None:
        """An alarm on an order ended (its condition, or for a latching rule the operator's
        reset): the update to send, if any.

        A latching alarm (unintended car movement, a fire zone) stays in alarm after its
        condition ends, until a person resets it: the order does not clear. Once every alarm
        still holding the order waits for a reset, it reads ``alarm_latched``; it clears when
        the last of them has ended or been reset.
        """
        was = current.latched
        if event.latched:
            log.info("work order %s: alarm %s ended and is latched until an operator resets "
                     "it", current.order.id, event.alarm_id)
            if event.alarm_id in current.active_alarms:
                current.latched_alarms.add(event.alarm_id)
        else:
            current.active_alarms.discard(event.alarm_id)
            current.latched_alarms.discard(event.alarm_id)
        if current.active_alarms:
            if was or not current.latched:
                return None  # another alarm of the incident still holds it, or no news
            return self._update(current, "alarm_latched", _iso(event.ts), alarm_latched=True,
                                evidence={**current.order.evidence, **event.evidence})
        if event.latched:
            return None  # (an order restored after a restart: it already says so)
        status = "alarm_cleared" if current.order.status == "open" else current.order.status
        reset: dict[str, object] = {}
        if event.transition is Transition.RESET:
            reset = {"alarm_reset_by": event.actor, "alarm_reset_note": event.reason or None}
        return self._update(current, "alarm_cleared", _iso(event.ts), status=status,
                            alarm_active=False, alarm_latched=False, evidence=event.evidence,
                            **reset)

    def _open_order_for(self, event: AlarmEvent) -> _Tracked | None:
        """An open order whose alarm still holds on the same device and category: the same
        real-world incident seen by another rule (an entrapment and its alarm button)."""
        for tracked in self._orders.values():
            order = tracked.order
            if (not tracked.restored and order.alarm_active and tracked.active_alarms
                    and order.location.device == event.device
                    and order.category == event.category
                    and order.status not in CLOSED_STATUSES):
                return tracked
        return None

    def _join(self, tracked: _Tracked, event: AlarmEvent) -> WorkOrder:
        self._by_alarm[event.alarm_id] = tracked.order.id
        tracked.active_alarms.add(event.alarm_id)
        joined = [*tracked.order.joined_alarms, event.alarm_id]
        return self._update(tracked, "alarm_joined", _iso(event.ts), joined_alarms=joined,
                            alarm_latched=tracked.latched,
                            evidence={**tracked.order.evidence, **event.evidence})

    def _hold(self, tracked: _Tracked, event: AlarmEvent) -> WorkOrder | None:
        """An alarm already on the order is active (again): it holds the order until it ends
        or is reset. An update when the order read latched: it no longer does."""
        was = tracked.latched
        tracked.active_alarms.add(event.alarm_id)
        tracked.latched_alarms.discard(event.alarm_id)
        if not was:
            return None
        return self._update(tracked, "alarm_reactivated", _iso(event.ts), alarm_latched=False,
                            evidence={**tracked.order.evidence, **event.evidence})

    def _mono_of(self, wall: float) -> float:
        """The monotonic time of a wall instant from outside this run (saved before a restart,
        or the platform's), read off both clocks now: the only place wall time turns into
        elapsed time."""
        return self._clock.monotonic() + (wall - self._clock.time())

    def _forget(self, order_id: str) -> None:
        self._orders.pop(order_id, None)
        for alarm_id in [a for a, o in self._by_alarm.items() if o == order_id]:
            del self._by_alarm[alarm_id]

    async def _emit(self, order: WorkOrder) -> None:
        self._changed.set()
        await self._sink(order)

    def _new_order(self, event: AlarmEvent, priority: Priority, policy: ResponsePolicy,
                   related: str | None) -> _Tracked:
        zh_title = category_title(event.category, "zh-CN", self._policies)
        en_title = category_title(event.category, "en", self._policies)
        raised = event.ts
        first = policy.ladder[0]
        # The order counts from when the alarm was confirmed: its monotonic stamp when it comes
        # from this run. One replayed after a restart carries the previous run's stamp, which
        # means nothing after a reboot (it may even lie ahead); the two clocks then disagree,
        # and the younger age is taken so that a step never makes an order look older.
        now = self._clock.monotonic()
        wall_age = self._clock.time() - raised
        mono_age = now - event.mono
        age = max(0.0, wall_age if mono_age < 0 else min(mono_age, wall_age))
        # Stable across re-sends: derived from what identifies the incident, not from chance.
        order_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"propgw:{self._site.id}:"
                                                      f"{event.alarm_id}:{event.ts:.3f}"))
        order = WorkOrder(
            id=order_id, seq=1, site_id=self._site.id, gateway_id=self._site.gateway_id,
            alarm_id=event.alarm_id, rule_id=event.rule_id, category=event.category,
            priority=priority, status="open", event="raised",
            title=Bilingual(zh=f"{zh_title}：{event.device_name}",
                            en=f"{en_title}: {event.device_name}"),
            description=Bilingual(zh=event.message_zh, en=event.message_en),
            location=WorkOrderLocation(site=self._site.id, building=event.location.building,
                                       floor=event.location.floor, zone=event.location.zone,
                                       room=event.location.room, device=event.device,
                                       device_name=event.device_name),
            evidence=event.evidence,
            detected_at=_iso(event.condition_since), raised_at=_iso(raised),
            respond_by=_iso(raised + policy.on_site_within),
            acknowledge_by=_iso(raised + first.within),
            resolve_by=_iso(raised + policy.resolve_within) if policy.resolve_within else None,
            escalation=Escalation(level=1, levels=len(policy.ladder), role=first.role,
                                  name=Bilingual(zh=first.name.zh, en=first.name.en),
                                  deadline=_iso(raised + first.within)),
            related_to=related, updated_at=_iso(raised),
        )
        return _Tracked(order=order, policy=policy, raised=raised, mono=now - age)


def _breach(window: Literal["acknowledge", "on_site", "resolve"], due_iso: str, at: float,
            late: float) -> list[SlaBreach]:
    if late <= 0:
        return []
    return [SlaBreach(window=window, due=due_iso, at=_iso(at), late_by_s=round(late, 3))]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def _parse(text: str) -> float:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
