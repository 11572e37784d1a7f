"""The alarm stage: rule evaluation followed by the alarm lifecycle.

``RuleEvaluator`` decides *whether a condition holds* (with on/off delays);
the lifecycle decides *what operators and the platform see* and emits :class:`AlarmEvent` s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.alarms._events import AlarmEvent, AlarmState, Detection
from gateway.alarms._rules import RuleEvaluator
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import GatewayConfig

__all__ = ["AlarmEngine", "AlarmSink"]

AlarmSink = Callable[[AlarmEvent], Awaitable[None]]


class AlarmEngine:
    """Readings in, :class:`AlarmEvent` s out."""

    def __init__(self, config: GatewayConfig, clock: Clock, sink: AlarmSink) -> None:
        self._sink = sink
        self._active: dict[str, AlarmEvent] = {}
        self.rules = RuleEvaluator(config, clock, self._on_detection)

    @property
    def evaluations(self) -> int:
        return self.rules.evaluations

    def active(self) -> list[AlarmEvent]:
        """Alarms currently active, oldest first."""
        return sorted(self._active.values(), key=lambda e: e.ts)

    async def run(self, readings: Subscription) -> None:
        await self.rules.run(readings)

    async def _on_detection(self, d: Detection) -> None:
        event = AlarmEvent(
            alarm_id=d.alarm_id, rule_id=d.rule_id, device=d.device,
            device_name=d.device_name, category=d.category, priority=d.priority,
            state=AlarmState.ACTIVE if d.active else AlarmState.CLEARED,
            message_zh=d.message_zh, message_en=d.message_en, location=d.location, ts=d.ts,
            condition_since=d.condition_since, mono=d.mono, evidence=d.evidence,
            work_order=d.work_order)
        if d.active:
            self._active[d.alarm_id] = event
        else:
            self._active.pop(d.alarm_id, None)
        await self._sink(event)
