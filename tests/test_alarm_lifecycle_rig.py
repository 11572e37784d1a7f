"""Test rig for the alarm lifecycle (no tests here): an AlarmBook on a real SQLite file driven
by Detections on the fake clock, with every announced and every journaled event collected."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.alarms import (
    AlarmActions,
    AlarmBook,
    AlarmEvent,
    AlarmJournal,
    AlarmRecord,
    Detection,
    LifecycleState,
    Transition,
)
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - {id: E1, name: 1号梯, driver: modbus-tcp, host: 127.0.0.1, kind: elevator,
     location: {building: "1", zone: Z1}, points: [{name: x, address: 0}]}
  - {id: FACP, name: 消防主机, driver: modbus-tcp, host: 127.0.0.1, kind: fire_panel,
     location: {building: "1", zone: Z1}, points: [{name: x, address: 0}]}
  - {id: D1, name: 1号门, driver: modbus-tcp, host: 127.0.0.1, kind: access_door,
     location: {building: "1", zone: Z1}, points: [{name: x, address: 0}]}
  - {id: D2, name: 2号门, driver: modbus-tcp, host: 127.0.0.1, kind: access_door,
     location: {building: "1", zone: Z2}, points: [{name: x, address: 0}]}
  - {id: W1, name: 水表, driver: modbus-tcp, host: 127.0.0.1, kind: water_meter,
     location: {zone: Z1}, points: [{name: x, address: 0}]}
rules:
  - {id: trapped, kind: elevator, when: {point: x, eq: 1}, category: elevator_entrapment,
     priority: P0, message: {zh: 困人, en: trapped}}
  - {id: fire, kind: fire_panel, when: {point: x, eq: 1}, category: fire_alarm, priority: P0,
     message: {zh: 火警, en: fire}}
  - {id: held, kind: access_door, when: {point: x, eq: 1}, category: door_held_open,
     priority: P2, realarm_after: 10m, message: {zh: 门长开, en: door held open}}
  - {id: forced, kind: access_door, when: {point: x, eq: 2}, category: door_forced,
     priority: P1, message: {zh: 门被强开, en: door forced}}
  - {id: duress, kind: access_door, when: {point: x, eq: 3}, category: duress, priority: P0,
     message: {zh: 胁迫, en: duress}}
  - {id: leak, kind: water_meter, when: {point: x, eq: 1}, category: water_leak,
     priority: P1, latching: true, message: {zh: 漏水, en: leak}}
  - {id: tamper, kind: water_meter, when: {point: x, eq: 2}, category: tamper, priority: P3,
     message: {zh: 防拆, en: tamper}}
alarms:
  suppression:
    - {id: fire-doors, while_active: [fire_alarm], suppress: [door_held_open, duress],
       same: [zone]}
"""

HELD = "held@D1"
HELD2 = "held@D2"
FORCED = "forced@D1"
TRAPPED = "trapped@E1"
FIRE = "fire@FACP"
LEAK = "leak@W1"
TAMPER = "tamper@W1"
DURESS = "duress@D1"


def site_config(extra: str = "") -> GatewayConfig:
    return load_config_text(SITE + extra)


class Rig:
    """An AlarmBook plus what it announced (``announced``) and journaled (``events``)."""

    def __init__(self, clock: FakeClock, path: Path | None, config: GatewayConfig | None = None
                 ) -> None:
        self.clock = clock
        self.config = config or site_config()
        self.announced: list[AlarmEvent] = []
        self.events: list[AlarmEvent] = []
        self.journal = AlarmJournal(path)
        self.book = AlarmBook(self.config, clock, self.journal, self._sink,
                              listener=self._listen)
        self.actions = AlarmActions(self.book)

    async def _sink(self, event: AlarmEvent) -> None:
        self.announced.append(event)

    async def _listen(self, event: AlarmEvent) -> None:
        self.events.append(event)

    async def __aenter__(self) -> Rig:
        await self.book.__aenter__()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.book.__aexit__(et, exc, tb)

    def detection(self, alarm_id: str, active: bool = True, **changes: Any) -> Detection:
        rule_id, _, device = alarm_id.partition("@")
        rule = next(r for r in self.config.rules if r.id == rule_id)
        dev = next(d for d in self.config.devices if d.id == device)
        now = self.clock.time()
        fields: dict[str, Any] = dict(
            alarm_id=alarm_id, rule_id=rule_id, device=device, device_name=dev.name or device,
            category=rule.category, priority=rule.priority, active=active,
            message_zh=rule.message.zh, message_en=rule.message.en, location=dev.location,
            ts=now, condition_since=now, mono=self.clock.monotonic(),
            evidence={"x": 1 if active else 0}, work_order=rule.work_order)
        fields.update(changes)
        return Detection(**fields)

    async def on(self, *alarm_ids: str) -> None:
        for alarm_id in alarm_ids:
            await self.book.on_detection(self.detection(alarm_id, True))

    async def off(self, *alarm_ids: str) -> None:
        for alarm_id in alarm_ids:
            await self.book.on_detection(self.detection(alarm_id, False))

    async def settle(self) -> None:
        """Let woken timers finish their transactions (the journal works on a thread)."""
        for _ in range(200):
            await self.clock.advance(0)
            if self.journal.inflight == 0:
                await self.clock.advance(0)
                if self.journal.inflight == 0:
                    return
            await self.journal.wait_idle()
        raise AssertionError("the alarm book did not settle")

    async def advance(self, seconds: float, step: float | None = None) -> None:
        """Move the fake clock, settling after each ``step`` so that timers commit in order."""
        step = step or seconds
        left = seconds
        while left > 1e-9:
            delta = min(step, left)
            await self.clock.advance(delta)
            await self.settle()
            left -= delta

    def state(self, alarm_id: str) -> LifecycleState:
        rec = self.book.get(alarm_id)
        return LifecycleState.NORMAL if rec is None else rec.lifecycle

    def record(self, alarm_id: str) -> AlarmRecord:
        rec = self.book.get(alarm_id)
        assert rec is not None, alarm_id
        return rec

    def said(self, alarm_id: str | None = None) -> list[tuple[str, str]]:
        """(transition, state) of announced events, optionally for one alarm."""
        return [(str(e.transition), str(e.state)) for e in self.announced
                if alarm_id is None or e.alarm_id == alarm_id]

    def journaled(self, alarm_id: str) -> list[str]:
        return [str(e.transition) for e in self.events if e.alarm_id == alarm_id]

    def last(self, alarm_id: str, transition: Transition | None = None) -> AlarmEvent:
        return [e for e in self.events if e.alarm_id == alarm_id
                and (transition is None or e.transition is transition)][-1]
