"""Evaluates rules on every reading and reports detections after their on/off delays.

Each (rule, device) pair is one :class:`_Instance` with a tiny state machine::

    normal --condition true--> pending --held for `for`--> ACTIVE
    ACTIVE --condition false--> clearing --held for `clear_for`--> CLEARED (normal)

An unknown condition (a point without a GOOD value) cancels a pending activation but never
clears an active alarm: a sensor that goes silent must not make an entrapment disappear.
Delays run on the injected clock, one timer task per pending instance, inside the evaluator's
TaskGroup. Conditions that change with time alone (stale data, schedules, sliding windows,
rates) are re-evaluated by one ticker every ``tick`` seconds of the clock.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gateway.alarms._conditions import Context, Node, compile_condition, site_zone
from gateway.alarms._events import Detection
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import (
    ALL_POINTS,
    DeviceConfig,
    GatewayConfig,
    Location,
    RuleConfig,
    condition_points,
)
from gateway.config import placeholders as id_placeholders
from gateway.devices import DeviceDirectory
from gateway.i18n import format_location
from gateway.logs import priority_level
from gateway.model import Reading, Value

__all__ = ["DetectionSink", "RuleEvaluator"]

log = logging.getLogger(__name__)

DetectionSink = Callable[[Detection], Awaitable[None]]


class RuleEvaluator:
    """Turns readings into :class:`Detection` s."""

    def __init__(self, config: GatewayConfig, clock: Clock, sink: DetectionSink, *,
                 tick: float = 1.0) -> None:
        self._clock = clock
        self._sink = sink
        self._tick = tick
        self._tz = site_zone(config.site.timezone)
        self._directory = DeviceDirectory(config.devices)
        self._rules = list(config.rules)
        self._values: dict[str, dict[str, Reading]] = {}
        self._last_good: dict[str, dict[str, float]] = {}
        self._instances: dict[str, list[_Instance]] = {}
        self._timed: list[_Instance] = []
        self._tg: asyncio.TaskGroup | None = None
        self.evaluations = 0
        self._groups_of: dict[str, list[_Instance]] = {}
        for rule in self._rules:
            if rule.group_by is not None:
                self._build_groups(rule, config)
        # Devices with literal ids exist from the start, so "no data since start" is stale.
        for dev in self._directory.configs():
            if not id_placeholders(dev.id):
                self._instances_for(dev.id)

    def restore(self, detection: Detection) -> bool:
        """Mark a condition as already active after a restart (the journal knows it was).

        Evaluation only reports changes, so without this an alarm whose condition ended while
        the gateway was down would never be reported as cleared. Returns False when no rule
        instance matches (the rule or device is gone from the config).
        """
        self._instances_for(detection.device)  # templated devices get theirs on first use
        for insts in self._instances.values():
            for inst in insts:
                if inst.alarm_id == detection.alarm_id and inst.active_event is None:
                    inst.active_event = detection
                    inst.since_wall = detection.condition_since
                    return True
        return False

    def active(self) -> list[Detection]:
        """Conditions currently detected, oldest first."""
        # A group's instance is listed under each of its members: count it once.
        found = {i.alarm_id: i.active_event for insts in self._instances.values() for i in insts
                 if i.active_event is not None}
        return sorted(found.values(), key=lambda e: e.ts)

    async def run(self, readings: Subscription) -> None:
        """Consume readings until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            ticker = tg.create_task(self._ticker(), name="alarms.ticker")
            try:
                while True:
                    await self.process(await readings.get())
            finally:
                self._tg = None
                ticker.cancel()
                for insts in self._instances.values():
                    for inst in insts:
                        inst.cancel_timer()

    async def process(self, reading: Reading) -> None:
        """Apply one reading and re-evaluate the rules of its device that read it."""
        now = self._clock.monotonic()
        self._values.setdefault(reading.device, {})[reading.point] = reading
        if reading.good:
            self._last_good.setdefault(reading.device, {})[reading.point] = now
        for inst in self._instances_for(reading.device):
            if reading.point in inst.points or ALL_POINTS in inst.points:
                inst.node.observe(reading, now)
                self.evaluations += 1
                await self._evaluate(inst)

    # -- internals

    async def _ticker(self) -> None:
        while True:
            await self._clock.sleep(self._tick)
            for inst in list(self._timed):
                self.evaluations += 1
                await self._evaluate(inst)

    def _instances_for(self, device_id: str) -> list[_Instance]:
        insts = self._instances.get(device_id)
        if insts is None:
            dev = self._directory.get(device_id)
            insts = [] if dev is None else [
                _Instance(rule, compile_condition(rule.when), device_id,
                          dev.name or device_id, dev.location)
                for rule in self._rules if rule.group_by is None and _applies(rule, dev)
            ]
            # A group's instance is timed once, in _build_groups, not once per member.
            self._timed.extend(i for i in insts if i.node.time_dependent)
            insts += self._groups_of.get(device_id, [])
            self._instances[device_id] = insts
            now = self._clock.monotonic()
            if dev is not None:
                self._last_good.setdefault(device_id, dict.fromkeys(dev.point_names(), now))
        return insts

    def _build_groups(self, rule: RuleConfig, config: GatewayConfig) -> None:
        field_name = rule.group_by
        groups: dict[str, list[str]] = {}
        for dev in config.rule_devices(rule):
            if id_placeholders(dev.id):
                continue  # templated devices appear at run time; groups are fixed at start
            key = "all" if field_name == "site" else getattr(dev.location, str(field_name))
            if key is not None:
                groups.setdefault(key, []).append(dev.id)
        for key, members in groups.items():
            label = "site" if field_name == "site" else f"{field_name}:{key}"
            location = (Location() if field_name == "site"
                        else Location.model_validate({str(field_name): key}))
            inst = _Instance(rule, compile_condition(rule.when, members), label,
                             f"{rule.kind or 'devices'} ({label}, {len(members)} devices)",
                             location, tuple(members))
            for member in members:
                self._groups_of.setdefault(member, []).append(inst)
            if inst.node.time_dependent:
                self._timed.append(inst)

    def _context(self, device_id: str, now: float) -> Context:
        return Context(values=self._values.get(device_id, {}),
                       last_good=self._last_good.get(device_id, {}), mono=now,
                       wall=self._clock.time(), tz=self._tz,
                       member=lambda member: self._context(member, now))

    async def _evaluate(self, inst: _Instance) -> None:
        now = self._clock.monotonic()
        ctx = self._context(inst.device_id, now)
        result = inst.node.evaluate(ctx)
        if inst.active_event is None:
            if result is True and inst.timer is None:
                inst.since_mono, inst.since_wall = now, self._clock.time()
                if inst.rule.for_ <= 0:
                    await self._activate(inst)
                else:
                    self._start_timer(inst, now + inst.rule.for_, self._activate)
            elif result is not True:
                inst.cancel_timer()
        elif result is False and inst.timer is None:
            if inst.rule.clear_for <= 0:
                await self._clear(inst)
            else:
                self._start_timer(inst, now + inst.rule.clear_for, self._clear)
        elif result is not False:
            inst.cancel_timer()

    def _start_timer(self, inst: _Instance, deadline: float,
                     action: Callable[[_Instance], Awaitable[None]]) -> None:
        if self._tg is None:
            raise RuntimeError("RuleEvaluator timers need run() to be active")

        async def fire() -> None:
            await self._clock.sleep_until(deadline)
            inst.timer = None
            await action(inst)

        inst.timer = self._tg.create_task(fire(), name=f"alarms.timer[{inst.alarm_id}]")

    async def _activate(self, inst: _Instance) -> None:
        event = self._event(inst, active=True)
        inst.active_event = event
        log.log(priority_level(event.priority), "alarm %s %s on %s: %s", event.priority,
                event.rule_id, event.device, event.message_en, extra={"priority": event.priority})
        await self._sink(event)

    async def _clear(self, inst: _Instance) -> None:
        event = self._event(inst, active=False)
        inst.active_event = None
        log.info("alarm %s on %s returned to normal", event.rule_id, event.device)
        await self._sink(event)

    def _event(self, inst: _Instance, *, active: bool) -> Detection:
        values = self._values.get(inst.device_id, {})
        names = sorted(inst.points - {ALL_POINTS})
        evidence: dict[str, Value] = {
            name: (values[name].value if name in values else None) for name in names
        }
        rule = inst.rule
        if inst.members:
            evidence = inst.evidence()
        # Messages may name any point of the device, not only those the rule reads.
        fields: dict[str, object] = {name: _display(r.value) for name, r in values.items()}
        fields.update(device=inst.device_id, device_name=inst.name,
                      members=len(inst.members))
        return Detection(
            alarm_id=inst.alarm_id,
            rule_id=rule.id,
            device=inst.device_id,
            device_name=inst.name,
            category=rule.category,
            priority=rule.priority,
            active=active,
            message_zh=_render(rule.message.zh, {**fields, "location":
                                                 format_location(inst.location, "zh-CN")}),
            message_en=_render(rule.message.en, {**fields, "location":
                                                 format_location(inst.location, "en")}),
            location=inst.location,
            ts=self._clock.time(),
            condition_since=inst.since_wall,
            mono=self._clock.monotonic(),
            evidence=evidence,
            work_order=rule.work_order,
        )


@dataclass(eq=False)
class _Instance:
    rule: RuleConfig
    node: Node
    #: The device id, or for a group rule the group's label such as "zone:feeder-A".
    device_id: str
    name: str
    location: Location
    members: tuple[str, ...] = ()
    points: set[str] = field(init=False)
    timer: asyncio.Task[None] | None = None
    active_event: Detection | None = None
    since_mono: float = 0.0
    since_wall: float = 0.0

    def __post_init__(self) -> None:
        self.points = condition_points(self.rule.when)

    @property
    def alarm_id(self) -> str:
        return f"{self.rule.id}@{self.device_id}"

    def evidence(self) -> dict[str, Value]:
        """For a group: each member device's verdict (true, false, or None = unknown)."""
        return dict(self.node.verdicts())

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _applies(rule: RuleConfig, dev: DeviceConfig) -> bool:
    if rule.devices is not None:
        return dev.id in rule.devices
    return dev.kind == rule.kind


def _display(value: Value) -> object:
    """Float32 registers carry noise digits (236.39999389648438): show what a meter shows."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return value


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _render(template: str, fields: Mapping[str, object]) -> str:
    """``str.format`` that leaves unknown ``{names}`` as they are instead of failing."""
    try:
        return string.Formatter().vformat(template, (), _Fields(fields))
    except (ValueError, IndexError):
        return template
