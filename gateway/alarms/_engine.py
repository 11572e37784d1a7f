"""The alarm stage: rule evaluation followed by the alarm lifecycle.

``RuleEvaluator`` decides *whether a condition holds* (with on/off delays); the
:class:`AlarmBook` decides *what operators and the platform see* (ISA-18.2 lifecycle, incidents,
chatter, floods, suppression), journals it, and emits :class:`AlarmEvent` s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.alarms._actions import AlarmActions
from gateway.alarms._events import AlarmEvent, Detection
from gateway.alarms._journal import AlarmJournal
from gateway.alarms._learned import LearnedStore, learned_path
from gateway.alarms._lifecycle import AlarmBook, AlarmListener
from gateway.alarms._lifecycle_state import AlarmRecord
from gateway.alarms._rules import RuleEvaluator
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import GatewayConfig

__all__ = ["AlarmEngine", "AlarmSink"]

AlarmSink = Callable[[AlarmEvent], Awaitable[None]]


class AlarmEngine:
    """Readings in, :class:`AlarmEvent` s out.

    Args:
        config: The site config.
        clock: Time source for every delay and deadline.
        sink: Receives the events to announce (work orders, upstream), in order.
        journal: Default: the one the config names (``alarms.journal``; in memory when the
            config names neither ``alarms.journal.path`` nor ``state_dir``).
        listener: Receives every lifecycle event, announced or not (the console's feed).

    Attributes:
        actions: Operator actions (acknowledge, shelve, reset, ...).
        book: The lifecycle state of every alarm.
        rules: Rule evaluation.
    """

    def __init__(self, config: GatewayConfig, clock: Clock, sink: AlarmSink, *,
                 journal: AlarmJournal | None = None,
                 listener: AlarmListener | None = None) -> None:
        self.book = AlarmBook(config, clock, journal or AlarmJournal.from_config(config), sink,
                              listener=listener)
        self.rules = RuleEvaluator(config, clock, self.book.on_detection,
                                   learned=LearnedStore(learned_path(config)))
        self.actions = AlarmActions(self.book)
        self._seeded = False

    @property
    def journal(self) -> AlarmJournal:
        """The alarm journal (an in-memory one if the configured file could not be opened)."""
        return self.book.journal

    @property
    def evaluations(self) -> int:
        return self.rules.evaluations

    def active(self) -> list[AlarmEvent]:
        """Alarms whose condition is active (shown or hidden), oldest first."""
        return self.book.active()

    async def reconfigure(self, config: GatewayConfig) -> str:
        """Apply reloaded rules and devices without losing any alarm's state.

        Rule evaluation first (so that nothing is detected any more for what is gone), then the
        book closes the alarms whose rule or device is gone.

        Returns:
            One line for the log, e.g. ``12 rule instance(s) kept, 2 new or changed, ...``.
        """
        kept, fresh, dropped = await self.rules.reconfigure(config)
        closed = await self.book.reconfigure(config)
        return (f"{kept} rule instance(s) kept, {fresh} new or changed, {dropped} dropped; "
                f"{closed} alarm(s) closed because their rule or device is gone")

    async def run(self, readings: Subscription) -> None:
        """Open the journal (restoring the previous run's alarms), then consume readings
        until cancelled; the journal is closed on the way out."""
        async with self.book:
            if not self._seeded:
                for rec in self.book.restored:
                    if rec.condition:
                        _seed(self.rules, rec)
                self._seeded = True
            await self.rules.run(readings)


def _seed(rules: RuleEvaluator, rec: AlarmRecord) -> None:
    """Tell rule evaluation that a restored alarm's condition is active, so that it reports
    the end of the condition (it only reports changes)."""
    rules.restore(Detection(
        alarm_id=rec.alarm_id, rule_id=rec.rule_id, device=rec.device,
        device_name=rec.device_name, category=rec.category, priority=rec.priority,
        active=True, message_zh=rec.message_zh, message_en=rec.message_en,
        location=rec.location, ts=rec.activated_at,
        condition_since=rec.condition_since, mono=0.0, evidence=dict(rec.evidence),
        work_order=rec.work_order))
