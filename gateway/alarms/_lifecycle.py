"""The alarm book: ISA-18.2 lifecycle of every alarm, journaled before anything is announced.

Rule evaluation reports :class:`Detection` s (a condition started or ended); operators act
through :class:`gateway.alarms.AlarmActions`; timers expire shelving, re-alarm, close stale
unacknowledged alarms and end chatter and floods. Each of these is one *transaction*:

1. work on copies of the records concerned and collect the :class:`AlarmEvent` s,
2. commit events and records to the journal (one SQLite transaction),
3. apply the copies, and only then
4. hand the announced events to the sink (work orders, upstream) in order, and every event to
   the optional listener (the console's live feed).

Timers measure monotonic time, so a wall clock stepped by NTP neither fires them early nor
holds them back. Their deadlines are also kept as wall times, which are journaled and shown to
people; after a restart each timer is derived again from its wall deadline, never for longer
than its own duration (a wall clock that is behind after a reboot must not stretch a shelving).

Transactions are serialised by one lock, so announcements leave in journal order. The journal
also remembers how far delivery got (``delivered_seq``, written with the next transaction and at
close): after a crash between a commit and its delivery, the announced events not yet delivered
are delivered again at start-up (same ``seq``, ``ts`` and ``incident_id``, so consumers can
de-duplicate), and nothing journaled is lost on the way to the work orders.

What consumers (the sink) receive: an event with ``state`` ACTIVE when an alarm starts being
shown to people (a new or re-activated incident, a re-alarm, or its condition still active when
shelving, suppression, out-of-service, chatter or flood grouping ends), and one with ``state``
CLEARED when its condition ends *after* they received ACTIVE for it (so an order opened is
always told the condition ended, even if the alarm was shelved meanwhile). For a latching rule
that CLEARED carries ``latched=True`` (the alarm stays in alarm), and an operator's reset of the
latch is announced as well (transition RESET, state CLEARED, ``actor`` the operator): the work
order clears only then. Acknowledgement, shelving, comments and the like are journaled and go
to the listener only.

If the journal cannot be written (disk full), alarms from rule evaluation are still announced
(a full disk must not silence a fire alarm) and the failure is logged at ERROR once; operator
actions are refused instead. What could not be written is kept: the latest record of every alarm
changed meanwhile, and the events handed on (bounded, oldest dropped first). It goes into the
next transaction that succeeds, retried every few seconds, so that once the disk takes writes
again the journal again says which alarms are open: a restart then continues their incidents
instead of raising them as new ones.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from gateway.alarms._events import (
    AlarmEvent,
    AlarmState,
    Detection,
    LifecycleState,
    Transition,
)
from gateway.alarms._flood import FloodDetector, FloodState, chatter_window
from gateway.alarms._journal import AlarmJournal, JournalBatch
from gateway.alarms._lifecycle_state import TIMERS, AlarmRecord
from gateway.clock import Clock
from gateway.config import GatewayConfig, Location, RuleConfig
from gateway.devices import DeviceDirectory
from gateway.errors import JournalError, UnknownAlarm

__all__ = ["AlarmBook", "AlarmListener", "Txn"]

log = logging.getLogger(__name__)

AlarmListener = Callable[[AlarmEvent], Awaitable[None]]

#: Commits holding events of these priorities, or operator actions, are fsynced.
DURABLE_PRIORITIES = frozenset({"P0", "P1"})

_FLOOD_KEY = ("", "flood")
_JOURNAL_KEY = ("", "journal")
#: While the journal refuses writes, try again this often (seconds).
JOURNAL_RETRY = 5.0
#: Events handed on without being journaled that are kept for the journal (oldest dropped).
_UNJOURNALED_EVENTS = 10_000

#: A timer woken at its deadline may read the clock a hair short of it; this absorbs that.
_EPS = 1e-3


class Txn:
    """One lifecycle transaction: working copies of records and the events they produce."""

    def __init__(self, book: AlarmBook, ts: float, mono: float) -> None:
        self.book = book
        #: Wall time (journal, labels) and monotonic time (deadlines) of the transaction.
        self.ts = ts
        self.mono = mono
        self.changed: dict[str, AlarmRecord] = {}
        self.events: list[AlarmEvent] = []
        self.flood_changed = False
        self.durable = False

    def peek(self, alarm_id: str) -> AlarmRecord | None:
        """The record as this transaction sees it (do not modify: use :meth:`get`)."""
        return self.changed.get(alarm_id) or self.book._records.get(alarm_id)

    def get(self, alarm_id: str) -> AlarmRecord | None:
        """A working copy of the record, kept by the commit."""
        rec = self.changed.get(alarm_id)
        if rec is None:
            current = self.book._records.get(alarm_id)
            if current is None:
                return None
            rec = self.changed[alarm_id] = current.copy()
        return rec

    def add(self, rec: AlarmRecord) -> AlarmRecord:
        self.changed[rec.alarm_id] = rec
        return rec

    def records(self) -> list[AlarmRecord]:
        ids = self.book._records.keys() | self.changed.keys()
        return [r for i in ids if (r := self.peek(i)) is not None]

    def emit(self, rec: AlarmRecord, transition: Transition, *, actor: str = "system",
             reason: str = "", announce: bool = False) -> AlarmEvent:
        """Record ``transition`` of ``rec`` as it is now; ``announce`` also sends it to the
        consumers (and updates what they were last told)."""
        if announce:
            rec.announced = rec.condition
            rec.shown = rec.shown or rec.condition
            rule = self.book.rule(rec)
            if rec.condition and rule is not None and rule.realarm_after is not None:
                # Counts from the announcement.
                rec.realarm_at = self.due_in(rec, "realarm", rule.realarm_after)
        event = rec.event(transition, ts=self.ts, mono=self.mono, actor=actor, reason=reason,
                          announced=announce)
        self.events.append(event)
        if rec.priority in DURABLE_PRIORITIES or actor != "system":
            self.durable = True
        return event

    def emit_event(self, event: AlarmEvent) -> None:
        self.events.append(event)

    def due_in(self, rec: AlarmRecord, kind: str, seconds: float) -> float:
        """Set timer ``kind`` of ``rec`` to fire ``seconds`` from now.

        Returns:
            The wall deadline, for the caller to store in the record (journaled and shown);
            the book sleeps on its monotonic twin, recorded here.
        """
        wall = self.ts + seconds
        rec.mono_deadlines[kind] = (wall, self.mono + seconds)
        return wall


class AlarmBook:
    """Every alarm's lifecycle state, journaled; announces what operators must see.

    Use as ``async with book:`` — entering opens the journal (and, the first time, restores
    the alarms of the previous run); leaving stops the timers and closes it.

    Args:
        config: The site config (rules for latching/re-alarm, the ``alarms`` section).
        clock: Time source for every deadline.
        journal: Where every event goes before it is announced.
        sink: Receives announced events (work orders, upstream), in order.
        listener: Receives every event, announced or not (the console's live feed).
    """

    def __init__(self, config: GatewayConfig, clock: Clock, journal: AlarmJournal,
                 sink: AlarmListener, *, listener: AlarmListener | None = None) -> None:
        self.config = config.alarms
        self._site = config.site
        self._clock = clock
        self.journal = journal
        self._sink = sink
        self._listener = listener
        self._rules: dict[str, RuleConfig] = {r.id: r for r in config.rules}
        self._directory = DeviceDirectory(config.devices)
        self._records: dict[str, AlarmRecord] = {}
        self._flood = FloodDetector(self.config.flood)
        self._lock = asyncio.Lock()
        self._tg: asyncio.TaskGroup | None = None
        self._timers: dict[tuple[str, str], tuple[float, asyncio.Task[None]]] = {}
        self._restored: list[AlarmRecord] | None = None
        self._delivered_seq = 0
        #: Why the journal refuses writes, while it does (alarms are still announced).
        self.journal_error: str | None = None
        # What a refused commit could not write, for the next one that succeeds.
        self._unjournaled_ids: dict[str, None] = {}
        self._unjournaled_events: collections.deque[AlarmEvent] = collections.deque(
            maxlen=_UNJOURNALED_EVENTS)
        self._unjournaled_flood = False
        self._unjournaled_dropped = 0
        self._suppressor_categories = {c for rule in self.config.suppression
                                       for c in rule.while_active}

    # -- life cycle of the book itself

    async def __aenter__(self) -> AlarmBook:
        failure: JournalError | None = None
        try:
            await self.journal.open(self._clock.time())
        except JournalError as exc:
            if self.journal.path is None:
                raise
            failure = exc
        if failure is not None:
            # A broken disk must not stop alarm detection: carry on without durability.
            log.error("%s; running with an in-memory alarm journal: alarms, shelving and "
                      "latches will not survive a restart", failure)
            self.journal = AlarmJournal(None, max_age=self.journal.max_age,
                                        max_rows=self.journal.max_rows)
            await self.journal.open(self._clock.time())
        try:
            if self._restored is None:
                self._restored = await self._restore()
            tg = asyncio.TaskGroup()
            await tg.__aenter__()
        except BaseException:
            await self.journal.close()
            raise
        self._tg = tg
        for rec in list(self._records.values()):
            self._sync_timers(rec)
        self._sync_flood_timer()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        tg, self._tg = self._tg, None
        try:
            for _, task in self._timers.values():
                task.cancel()
            self._timers.clear()
            if tg is not None:
                await tg.__aexit__(et, exc, tb)
        finally:
            try:
                if self.journal_error is not None:  # a last chance for what is unwritten
                    await self._commit(self._txn(), fail_open=True)
                else:
                    await self.journal.commit(
                        JournalBatch(meta={"delivered_seq": self._delivered_seq}),
                        self._clock.time())
            except JournalError as failure:
                log.debug("could not record delivery progress at close: %s", failure)
            finally:
                await self.journal.close()

    @property
    def restored(self) -> list[AlarmRecord]:
        """Records brought back from the journal when the book was first opened."""
        return list(self._restored or [])

    # -- queries

    def get(self, alarm_id: str) -> AlarmRecord | None:
        """A copy of the alarm's record, if the book knows it."""
        rec = self._records.get(alarm_id)
        return None if rec is None else rec.copy()

    def records(self) -> list[AlarmRecord]:
        """Copies of every known record."""
        return [r.copy() for r in self._records.values()]

    def active(self) -> list[AlarmEvent]:
        """Alarms whose condition is active (shown or hidden), oldest activation first."""
        recs = sorted((r for r in self._records.values() if r.condition),
                      key=lambda r: r.activated_at)
        return [r.event(Transition.ACTIVATED if r.occurrences <= 1 else Transition.REACTIVATED,
                        ts=r.activated_at, mono=0.0, announced=r.announced) for r in recs]

    @property
    def flood(self) -> FloodState:
        """The flood detector's state (``flood_id`` is set during a flood)."""
        state = self._flood.state
        return dataclasses.replace(state, history=list(state.history),
                                   mono_history=list(state.mono_history))

    # -- detections from rule evaluation

    async def on_detection(self, d: Detection) -> None:
        """Apply a condition change reported by rule evaluation."""
        async with self._lock:
            txn = self._txn()
            rec = txn.get(d.alarm_id) or txn.add(AlarmRecord.from_detection(d))
            rec.message_zh, rec.message_en = d.message_zh, d.message_en
            rec.category, rec.priority, rec.work_order = d.category, d.priority, d.work_order
            rec.evidence = dict(d.evidence)
            rec.device_name, rec.location = d.device_name, d.location
            if d.active and not rec.condition:
                rec.condition_since = d.condition_since
                self._activate(txn, rec)
            elif not d.active and rec.condition:
                self._return_to_normal(txn, rec)
            else:
                # Same state again (e.g. re-confirmed after a restart): refresh, nothing to say.
                self._records[rec.alarm_id] = rec
                return
            await self._commit(txn, fail_open=True)

    # -- operator actions (validated by gateway.alarms.AlarmActions)

    async def operate(self, action: str, alarm_id: str,
                      apply: Callable[[Txn, AlarmRecord], None]) -> list[AlarmEvent]:
        """Run an operator action on one alarm as a durable transaction.

        ``apply`` checks the record (raising :class:`AlarmActionRejected`) and changes it.

        Raises:
            UnknownAlarm: the alarm id is not known.
            AlarmActionRejected: ``apply`` refused.
            JournalError: the action could not be journaled; nothing changed.
        """
        async with self._lock:
            txn = self._txn()
            txn.durable = True
            rec = txn.get(alarm_id) or self._configured_record(alarm_id)
            if rec is None:
                raise UnknownAlarm(alarm_id=alarm_id, action=action)
            txn.add(rec)
            apply(txn, rec)
            return await self._commit(txn, fail_open=False)

    # -- helpers for actions

    def rule(self, rec: AlarmRecord) -> RuleConfig | None:
        return self._rules.get(rec.rule_id)

    def after_ack(self, txn: Txn, rec: AlarmRecord) -> None:
        """Deadlines after an acknowledgement: re-alarm restarts, nothing to close."""
        rec.close_at = None
        rule = self.rule(rec)
        if rec.condition and rule is not None and rule.realarm_after is not None:
            rec.realarm_at = txn.due_in(rec, "realarm", rule.realarm_after)

    def unhidden(self, txn: Txn, rec: AlarmRecord, transition: Transition, *,
                 actor: str = "system", reason: str = "") -> None:
        """Record the end of a hiding state (already removed from ``rec``): an alarm still
        active and no longer hidden is announced again; one that ended while hidden, without
        anyone being shown it, closes (nobody has anything to acknowledge)."""
        shows = rec.condition and not rec.hidden
        txn.emit(rec, transition, actor=actor, reason=reason, announce=shows)
        if not shows:
            self._close_if_unseen(txn, rec)

    def _close_if_unseen(self, txn: Txn, rec: AlarmRecord) -> None:
        if rec.hidden or rec.condition or rec.shown or rec.acked or rec.latched:
            return
        rec.acked = True
        rec.close_at = None
        txn.emit(rec, Transition.CLOSED, reason="ended while hidden; nobody was shown it")

    def update_targets(self, txn: Txn, source: AlarmRecord) -> None:
        """Re-evaluate suppression by design of alarms that ``source`` may suppress."""
        if source.category not in self._suppressor_categories:
            return
        targets = {c for rule in self.config.suppression if source.category in rule.while_active
                   for c in rule.suppress}
        for peeked in txn.records():
            if peeked.category not in targets:
                continue
            if not peeked.condition and peeked.suppressed_by is None:
                continue
            now_by = self._suppressor(txn, peeked)
            if now_by == peeked.suppressed_by:
                continue
            rec = txn.get(peeked.alarm_id) or txn.add(peeked)
            was, rec.suppressed_by = rec.suppressed_by, now_by
            if was is not None and now_by is not None:
                continue  # another active alarm took over the suppression: no news
            if now_by is not None:
                txn.emit(rec, Transition.SUPPRESSED, reason=f"suppressed by design: {now_by}")
            else:
                self.unhidden(txn, rec, Transition.UNSUPPRESSED, reason="suppressing alarm ended")

    # -- transitions driven by the condition

    def _activate(self, txn: Txn, rec: AlarmRecord) -> None:
        ts = txn.ts
        new_incident = not rec.incident_open
        rec.condition = True
        rec.activated_at = ts
        if new_incident:
            rec.incident_id = _incident_id()
            rec.occurrences = 1
            rec.shown = False
        else:
            rec.occurrences += 1
        rec.acked = False
        rec.latched = False
        rec.close_at = None
        rec.suppressed_by = self._suppressor(txn, rec)

        was_chattering = rec.chattering
        rec.chattering = self._chatters(txn, rec)
        rec.chatter_until = txn.due_in(rec, "chatter", self.config.chatter.window) \
            if rec.chattering else None

        flood_started = False
        if new_incident and rec.out_of_service is None and rec.shelf is None \
                and rec.suppressed_by is None:
            flood_started = self._flood.count(ts, txn.mono)
            txn.flood_changed = True
        flood_id = self._flood.flood_id
        if flood_id is not None and not self._flood.individual(rec.priority):
            if rec.flood_group != flood_id and new_incident:
                self._flood.state.grouped += 1
                txn.flood_changed = True
            rec.flood_group = flood_id

        rule = self.rule(rec)
        rec.realarm_at = txn.due_in(rec, "realarm", rule.realarm_after) \
            if rule and rule.realarm_after else None

        announce = not rec.hidden and not (was_chattering and rec.announced)
        txn.emit(rec, Transition.ACTIVATED if new_incident else Transition.REACTIVATED,
                 reason=self._why_hidden(rec), announce=announce)
        if rec.chattering and not was_chattering:
            txn.emit(rec, Transition.CHATTERING,
                     reason=f"{len(rec.activations)} activations within "
                            f"{self.config.chatter.window:g} s")
        if rec.out_of_service is not None and rec.priority == "P0":
            log.warning("life-safety alarm %s activated while out of service (%s: %s)",
                        rec.alarm_id, rec.out_of_service.actor, rec.out_of_service.reason)
        if flood_started:
            self._start_flood(txn)
        self.update_targets(txn, rec)

    def _chatters(self, txn: Txn, rec: AlarmRecord) -> bool:
        """Count this activation in the chatter window (on monotonic time, keeping the wall
        times in ``activations``); True when the alarm now chatters."""
        stamps = rec.mono_activations
        if len(stamps) != len(rec.activations):  # restored: derive this run's times once
            stamps[:] = [min(txn.mono, txn.mono - (txn.ts - t)) for t in rec.activations]
        chattering = chatter_window(stamps, txn.mono, self.config.chatter)
        kept = len(stamps) - 1  # the older activations still inside the window
        rec.activations = [*rec.activations[len(rec.activations) - kept:], txn.ts]
        return chattering

    def _return_to_normal(self, txn: Txn, rec: AlarmRecord) -> None:
        rec.condition = False
        rule = self.rule(rec)
        if rule is not None and rule.latching:
            rec.latched = True
        rec.realarm_at = None
        after = self.config.close_unacknowledged_after
        if rec.base_state is LifecycleState.RTN_UNACK and after is not None:
            rec.close_at = txn.due_in(rec, "close", after)
        # Chatter holds the CLEARED back until the alarm has been quiet for a whole window.
        txn.emit(rec, Transition.RETURNED, announce=rec.announced and not rec.chattering)
        if rec.shelf is not None and rec.shelf.one_shot:
            rec.shelf = None
            self.unhidden(txn, rec, Transition.UNSHELVED,
                          reason="one-shot shelving ends when the alarm returns to normal")
        self.update_targets(txn, rec)

    # -- floods

    def _start_flood(self, txn: Txn) -> None:
        state = self._flood.state
        log.warning("alarm flood %s: %d new alarms within %g s; priorities other than %s "
                    "are grouped", state.flood_id, len(state.history),
                    self.config.flood.window, "/".join(self.config.flood.individual))
        txn.emit_event(self._flood_event(txn, Transition.FLOOD_STARTED, state, active=True))

    def _end_flood(self, txn: Txn) -> None:
        final = self._flood.finish()
        txn.flood_changed = True
        log.warning("alarm flood %s ended: %d new alarms, %d grouped", final.flood_id,
                    final.counted, final.grouped)
        txn.emit_event(self._flood_event(txn, Transition.FLOOD_ENDED, final, active=False))
        grouped = sorted((r for r in txn.records() if r.flood_group == final.flood_id),
                         key=lambda r: r.activated_at)
        for peeked in grouped:
            rec = txn.get(peeked.alarm_id) or txn.add(peeked)
            rec.flood_group = None
            if rec.condition and not rec.hidden:
                txn.emit(rec, Transition.FLOOD_RELEASED,
                         reason=f"still active when alarm flood {final.flood_id} ended",
                         announce=True)
            else:
                self._close_if_unseen(txn, rec)

    def _flood_event(self, txn: Txn, transition: Transition, state: FloodState, *,
                     active: bool) -> AlarmEvent:
        gw = self._site.gateway_id
        window = self.config.flood.window
        n, grouped = state.counted, state.grouped
        return AlarmEvent(
            alarm_id=f"alarm_flood@{gw}", rule_id="alarm_flood", device=gw, device_name=gw,
            category="alarm_flood", priority="P2",
            state=AlarmState.ACTIVE if active else AlarmState.CLEARED,
            message_zh=f"报警泛滥：{window / 60:g}分钟内{n}条新报警，其中{grouped}条低优先级报警"
                       f"已合并",
            message_en=f"Alarm flood: {n} new alarms within {window / 60:g} min; {grouped} "
                       f"lower-priority alarm(s) grouped",
            location=Location(), ts=txn.ts, condition_since=state.started or txn.ts,
            mono=txn.mono,
            evidence={"new_alarms": n, "grouped": grouped, "peak_in_window": state.peak,
                      "window_s": window},
            work_order=False,
            lifecycle=LifecycleState.ACTIVE_UNACK if active else LifecycleState.NORMAL,
            transition=transition, incident_id=state.flood_id or "", actor="system",
            reason=f"more than {self.config.flood.start_above} new alarms in {window:g} s"
            if active else f"fewer than {self.config.flood.end_below} new alarms in "
                           f"{window:g} s",
            flood_group=state.flood_id, announced=True)

    # -- timers

    def _sync_timers(self, rec: AlarmRecord) -> None:
        for kind in TIMERS:
            self._schedule((rec.alarm_id, kind), self._mono_deadline(rec, kind))

    def _sync_flood_timer(self) -> None:
        self._flood.rebase(self._clock.time(), self._clock.monotonic())
        self._schedule(_FLOOD_KEY, self._flood.next_check())

    def _mono_deadline(self, rec: AlarmRecord, kind: str) -> float | None:
        """When timer ``kind`` of ``rec`` fires, on the monotonic clock (None: not set)."""
        wall = rec.deadline(kind)
        if wall is None:
            return None
        twin = rec.mono_deadlines.get(kind)
        if twin is None or twin[0] != wall:
            # Set before a restart: only the wall clock is left to tell how long remains,
            # and no more than the timer's whole duration can.
            left = wall - self._clock.time()
            longest = self._duration(rec, kind)
            if longest is not None:
                left = min(left, longest)
            twin = rec.mono_deadlines[kind] = (wall, self._clock.monotonic() + left)
        return twin[1]

    def _duration(self, rec: AlarmRecord, kind: str) -> float | None:
        """The whole duration of timer ``kind`` of ``rec``, when it is known."""
        if kind == "shelf":
            return None if rec.shelf is None else rec.shelf.until - rec.shelf.since
        if kind == "realarm":
            rule = self.rule(rec)
            return None if rule is None else rule.realarm_after
        if kind == "close":
            return self.config.close_unacknowledged_after
        return self.config.chatter.window

    def _schedule(self, key: tuple[str, str], deadline: float | None) -> None:
        current = self._timers.get(key)
        if current is not None and current[0] == deadline:
            return
        if current is not None:
            current[1].cancel()
            del self._timers[key]
        if deadline is None or self._tg is None:
            return
        task = self._tg.create_task(self._timer(key, deadline),
                                    name=f"alarms.lifecycle[{key[0] or key[1]}].{key[1]}")
        self._timers[key] = (deadline, task)

    async def _timer(self, key: tuple[str, str], deadline: float) -> None:
        await self._clock.sleep_until(deadline)
        if self._timers.get(key, (None,))[0] == deadline:
            del self._timers[key]
        async with self._lock:
            txn = self._txn()
            if key == _JOURNAL_KEY:
                if self.journal_error is not None:
                    await self._commit(txn, fail_open=True)  # only what is still unwritten
                return
            if key == _FLOOD_KEY:
                if self._flood.ends(txn.mono):
                    self._end_flood(txn)
                else:
                    self._sync_flood_timer()
            else:
                self._expire(txn, key[0], key[1])
            if txn.events or txn.changed or txn.flood_changed:
                await self._commit(txn, fail_open=True)
            else:
                self._reschedule_all(key)

    def _reschedule_all(self, key: tuple[str, str]) -> None:
        if key == _FLOOD_KEY:
            self._sync_flood_timer()
        elif (rec := self._records.get(key[0])) is not None:
            self._sync_timers(rec)

    def _expire(self, txn: Txn, alarm_id: str, kind: str) -> None:
        peeked = txn.peek(alarm_id)
        if peeked is None:
            return
        due = self._mono_deadline(peeked, kind)
        if due is None or due > txn.mono + _EPS:
            self._reschedule_all((alarm_id, kind))
            return
        rec = txn.get(alarm_id)
        assert rec is not None
        if kind == "realarm":
            rule = self.rule(rec)
            rec.realarm_at = (txn.due_in(rec, "realarm", rule.realarm_after)
                              if rec.condition and rule and rule.realarm_after else None)
            if rec.condition and not rec.hidden and not rec.chattering:
                rec.acked = False
                txn.emit(rec, Transition.REALARMED,
                         reason=f"still active after {rule.realarm_after if rule else 0:g} s",
                         announce=True)
        elif kind == "close":
            rec.close_at = None
            if rec.base_state is LifecycleState.RTN_UNACK:
                rec.acked = True
                txn.emit(rec, Transition.CLOSED,
                         reason="returned to normal and not acknowledged within "
                                f"{self.config.close_unacknowledged_after or 0:g} s")
        elif kind == "chatter":
            rec.chatter_until = None
            rec.chattering = False
            txn.emit(rec, Transition.CHATTER_ENDED,
                     reason=f"no activation for {self.config.chatter.window:g} s",
                     announce=_needs_announcing(rec))
        elif kind == "shelf" and rec.shelf is not None:
            shelf, rec.shelf = rec.shelf, None
            self.unhidden(txn, rec, Transition.SHELVE_EXPIRED,
                          reason=f"shelved by {shelf.actor} until its time limit")

    # -- transaction plumbing

    def _txn(self) -> Txn:
        return Txn(self, self._clock.time(), self._clock.monotonic())

    async def _commit(self, txn: Txn, *, fail_open: bool) -> list[AlarmEvent]:
        records = {i: (None if r.plain else r.to_json()) for i, r in txn.changed.items()}
        for alarm_id in self._unjournaled_ids:
            if alarm_id not in records:
                rec = self._records.get(alarm_id)
                records[alarm_id] = None if rec is None or rec.plain else rec.to_json()
        delivered = list(self._unjournaled_events)
        flood = txn.flood_changed or self._unjournaled_flood
        batch = JournalBatch(
            events=txn.events, delivered=delivered, records=records,
            meta={"delivered_seq": self._delivered_seq,
                  **({"flood": self._flood.state.to_json()} if flood else {})},
            durable=txn.durable or bool(delivered))
        failure: JournalError | None = None
        try:
            written = await self.journal.commit(batch, txn.ts)
        except JournalError as exc:
            if not fail_open:
                raise
            failure = exc
            self._keep_unjournaled(txn)
            seqs = [0] * len(txn.events)
        else:
            seqs = written[len(delivered):]
            if delivered:
                self._delivered_seq = max(self._delivered_seq, written[len(delivered) - 1])
        self._journal_outcome(failure, caught_up=(len(self._unjournaled_ids), len(delivered)))
        events = [dataclasses.replace(e, seq=s) for e, s in zip(txn.events, seqs, strict=True)]
        self._records.update(txn.changed)
        for rec in txn.changed.values():
            self._sync_timers(rec)
        self._sync_flood_timer()
        self._schedule(_JOURNAL_KEY, None if failure is None
                       else self._clock.monotonic() + JOURNAL_RETRY)
        for event in events:
            await self._deliver(event)
        return events

    def _keep_unjournaled(self, txn: Txn) -> None:
        """Remember what a refused commit did not write (its events are announced anyway)."""
        self._unjournaled_ids.update(dict.fromkeys(txn.changed))
        room = _UNJOURNALED_EVENTS - len(self._unjournaled_events)
        self._unjournaled_dropped += max(0, len(txn.events) - room)
        self._unjournaled_events.extend(txn.events)
        self._unjournaled_flood = self._unjournaled_flood or txn.flood_changed

    def _journal_outcome(self, failure: JournalError | None, *,
                         caught_up: tuple[int, int]) -> None:
        if failure is not None:
            if self.journal_error is None:
                log.error("%s; alarms are announced without being journaled until it "
                          "recovers (retried every %g s)", failure, JOURNAL_RETRY)
            self.journal_error = str(failure)
            return
        if self.journal_error is not None:
            records, events = caught_up
            dropped = (f"; {self._unjournaled_dropped} older event(s) could not be kept"
                       if self._unjournaled_dropped else "")
            log.warning("alarm journal %s writable again; %d alarm record(s) and %d event(s) "
                        "it had refused are now written%s", self.journal.name, records, events,
                        dropped)
        self.journal_error = None
        self._unjournaled_ids.clear()
        self._unjournaled_events.clear()
        self._unjournaled_flood = False
        self._unjournaled_dropped = 0

    async def _deliver(self, event: AlarmEvent) -> None:
        if event.announced:
            await self._sink(event)
            self._delivered_seq = max(self._delivered_seq, event.seq)
        if self._listener is not None:
            await self._listener(event)

    # -- restore

    async def _restore(self) -> list[AlarmRecord]:
        state = await self.journal.load()
        delivered = state.meta.get("delivered_seq")
        if delivered is None:  # a new journal: nothing was ever announced from it
            delivered = await self.journal.last_seq()
        self._delivered_seq = int(delivered)
        undelivered = await self.journal.events(after_seq=self._delivered_seq, announced=True)
        restored = [AlarmRecord.from_json(data) for data in state.records]
        self._flood.state = FloodState.from_json(state.meta.get("flood") or {})
        self._records = {r.alarm_id: r for r in restored}
        if undelivered:
            log.warning("delivering %d alarm event(s) journaled but not delivered before the "
                        "last stop", len(undelivered))
            async with self._lock:
                for event in undelivered:
                    await self._deliver(event)
        orphans = [r for r in restored if not self._still_configured(r)]
        if orphans:
            async with self._lock:
                await self._close_orphans(orphans)
        if restored:
            log.info("alarm journal %s: restored %d alarm(s)", self.journal.name,
                     len(restored) - len(orphans))
        return [r.copy() for r in restored if r not in orphans]

    async def reconfigure(self, config: GatewayConfig) -> int:
        """Take the rules and devices of ``config`` (a reloaded config; every other section must
        be unchanged): alarms whose rule or device is gone are closed, as at start-up.

        Returns:
            How many alarms were closed.
        """
        async with self._lock:
            self._rules = {r.id: r for r in config.rules}
            self._directory = DeviceDirectory(config.devices)
            orphans = [r for r in self._records.values() if not self._still_configured(r)]
            if self._tg is None:  # not open (the stage is restarting): closed when it opens
                return 0
            await self._close_orphans(orphans)
            return len(orphans)

    async def _close_orphans(self, orphans: Sequence[AlarmRecord]) -> None:
        """Close the alarms of rules or devices no longer configured (lock held)."""
        if not orphans:
            return
        txn = self._txn()
        for peeked in orphans:
            rec = txn.get(peeked.alarm_id)
            assert rec is not None
            if rec.plain:
                continue  # normal and acknowledged: nothing to tell anyone
            rec.condition = rec.latched = False
            rec.acked = True
            rec.shelf = rec.out_of_service = None
            rec.suppressed_by = rec.flood_group = None
            rec.realarm_at = rec.close_at = rec.chatter_until = None
            rec.chattering = False
            txn.emit(rec, Transition.CLOSED, announce=rec.announced,
                     reason="its rule or device is no longer configured")
        await self._commit(txn, fail_open=True)
        for rec in orphans:
            self._records.pop(rec.alarm_id, None)

    def _still_configured(self, rec: AlarmRecord) -> bool:
        rule = self._rules.get(rec.rule_id)
        if rule is not None and rule.group_by is not None:
            return True  # the "device" is a group label such as zone:feeder-A
        dev = self._directory.get(rec.device)
        if rule is None or dev is None:
            return False
        return dev.id in rule.devices if rule.devices is not None else dev.kind == rule.kind

    def _configured_record(self, alarm_id: str) -> AlarmRecord | None:
        """A normal record for an alarm not seen yet but configured (rule@device)."""
        rule_id, sep, device = alarm_id.partition("@")
        rule = self._rules.get(rule_id)
        dev = self._directory.get(device) if sep else None
        if rule is None or dev is None:
            return None
        rec = AlarmRecord(alarm_id=alarm_id, rule_id=rule_id, device=device,
                          device_name=dev.name or device, category=rule.category,
                          priority=rule.priority, location=dev.location,
                          message_zh=rule.message.zh, message_en=rule.message.en,
                          work_order=rule.work_order)
        return rec if self._still_configured(rec) else None

    # -- suppression

    def _suppressor(self, txn: Txn, rec: AlarmRecord) -> str | None:
        if rec.priority == "P0":
            return None  # life safety is never suppressed
        for rule in self.config.suppression:
            if rec.category not in rule.suppress:
                continue
            for other in txn.records():
                if other.condition and other.category in rule.while_active \
                        and _same_place(rec.location, other.location, rule.same):
                    return f"{rule.id} ({other.alarm_id} active)"
        return None

    def _why_hidden(self, rec: AlarmRecord) -> str:
        if rec.out_of_service is not None:
            return (f"out of service ({rec.out_of_service.actor}: "
                    f"{rec.out_of_service.reason})")
        if rec.shelf is not None:
            return f"shelved ({rec.shelf.actor}: {rec.shelf.reason})"
        if rec.suppressed_by is not None:
            return f"suppressed by design: {rec.suppressed_by}"
        if rec.flood_group is not None:
            return f"grouped during alarm flood {rec.flood_group}"
        if rec.chattering:
            return f"chattering: {len(rec.activations)} activations within " \
                   f"{self.config.chatter.window:g} s"
        return ""


def _needs_announcing(rec: AlarmRecord) -> bool:
    """Whether consumers must be told: a shown active alarm they have not been told about,
    or an ended one they were told was active."""
    if rec.condition:
        return not rec.hidden and not rec.announced
    return rec.announced


def _same_place(a: Location, b: Location, fields: Sequence[str]) -> bool:
    for name in fields:
        va, vb = getattr(a, name), getattr(b, name)
        if va is None or vb is None or va != vb:
            return False
    return True


def _incident_id() -> str:
    # Random, not derived from (alarm, time): two incidents of one alarm may start within the
    # same millisecond. It is journaled, so it stays the same across restarts.
    return str(uuid.uuid4())
