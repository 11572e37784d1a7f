"""Evaluates rules on every reading and reports detections after their on/off delays.

Each (rule, device) pair is one :class:`_Instance` with a tiny state machine::

    normal --condition true--> pending --held for `for`--> ACTIVE
    ACTIVE --condition false--> clearing --held for `clear_for`--> CLEARED (normal)

An unknown condition (a point without a GOOD value) cancels a pending activation but never
clears an active alarm: a sensor that goes silent must not make an entrapment disappear.
Delays run on the injected clock, one timer task per pending instance, inside the evaluator's
TaskGroup. Conditions that change with time alone (stale data, schedules, sliding windows,
rates, changes) are re-evaluated by one ticker every ``tick`` seconds of the clock.

A condition may read another device (``{device: fire-panel-1, point: zone3_state, eq: FIRE}``):
an index from each referenced (device, point) to the instances that read it, built with the
instances, lets a reading of the referenced device re-evaluate exactly those instances, so the
rule follows either side; a device nobody references costs one dictionary look-up per message.
A templated reference (``FACP-1-zone-{zone}``) is filled once per instance when it is built,
from its device's location and id captures, so the index holds concrete ids and a reading
costs the same as with a literal reference; one that names no device leaves that part of the
condition unknown for the instance (logged once).

The readings of one message (one MQTT payload, one Modbus read: same device, same receive
time) are applied together before the rules are evaluated, so a rule never sees half of a
message: a door state ``{open: true, locked: false}`` arriving after ``{open: false, locked:
true}`` must not look, for an instant, like a door open while locked.

:meth:`RuleEvaluator.reconfigure` applies new rules and devices while readings keep flowing
(``propgw`` reloads its config on SIGHUP): an instance whose rule, device name and location are
unchanged is kept as it is (condition state, pending on/off delay, active alarm); a changed one
is compiled afresh but keeps the alarm it had raised, so the new condition decides when that
alarm ends and nothing is raised twice; new and changed instances are judged at once on the
last readings instead of waiting for the next one. Readings, ticks, delay timers and
reconfiguration take turns under one lock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.alarms._conditions import (
    Context,
    LearnedLevel,
    Node,
    OnDevice,
    compile_condition,
    learned_levels,
    learns,
    reference_nodes,
    restore_levels,
    site_zone,
)
from gateway.alarms._events import Detection
from gateway.alarms._learned import LearnedStore
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import (
    ALL_POINTS,
    DeviceConfig,
    GatewayConfig,
    Location,
    RuleConfig,
    condition_points,
    fill_reference,
    reference_fields,
    references,
)
from gateway.config import placeholders as id_placeholders
from gateway.devices import DeviceDirectory
from gateway.i18n import format_location
from gateway.logs import priority_level
from gateway.model import Quality, Reading, Value

__all__ = ["DetectionSink", "RuleEvaluator"]

log = logging.getLogger(__name__)

_GOOD = Quality.GOOD
_COMM_LOSS = Quality.COMM_LOSS
#: At most this many queued readings are applied before evaluating (a bound, not a tuning).
_MESSAGE_MAX = 512

DetectionSink = Callable[[Detection], Awaitable[None]]


class RuleEvaluator:
    """Turns readings into :class:`Detection` s."""

    def __init__(self, config: GatewayConfig, clock: Clock, sink: DetectionSink, *,
                 tick: float = 1.0, learned: LearnedStore | None = None,
                 save_every: float = 600.0) -> None:
        self._clock = clock
        #: Learned levels (rolling baselines) kept across restarts; see :mod:`._learned`.
        self._store = learned
        self._save_every = save_every
        self._saved: dict[str, list[LearnedLevel]] = {}
        #: Set once :meth:`run` has given the instances what earlier runs learned.
        self.restored = asyncio.Event()
        self._sink = sink
        self._tick = tick
        self._tz = site_zone(config.site.timezone)
        self._directory = DeviceDirectory(config.devices)
        self._rules = list(config.rules)
        self._values: dict[str, dict[str, Reading]] = {}
        self._last_good: dict[str, dict[str, float]] = {}
        #: Per comm-loss point: monotonic time since which it has been silent.
        self._lost_since: dict[str, dict[str, float]] = {}
        self._instances: dict[str, list[_Instance]] = {}
        self._timed: list[_Instance] = []
        self._tg: asyncio.TaskGroup | None = None
        self._lock = asyncio.Lock()
        #: While reconfiguring: the instances that may be kept, by alarm id.
        self._reuse: dict[str, _Instance] = {}
        self.evaluations = 0
        self._groups_of: dict[str, list[_Instance]] = {}
        #: Referenced device -> point (or "*") -> the instances whose condition reads it.
        self._readers: dict[str, dict[str, list[_Instance]]] = {}
        self._build(config)

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
        """Consume readings until cancelled; learned levels are loaded first and saved on the
        way out."""
        # Nothing learns (most sites): no file, and no worker-thread hop before the first
        # reading. A baseline rule added by a reload is saved from then on.
        if self._store is not None and any(learns(compile_condition(r.when))
                                           for r in self._rules if r.group_by is None):
            self._saved = await asyncio.to_thread(self._store.load, self._clock.time())
            restored = sum(restore_levels(inst.node, self._saved.get(inst.alarm_id, ()))
                           for inst in self._all_instances())
            if restored:
                log.info("learned levels: %d restored from %s", restored, self._store.path)
        self.restored.set()
        try:
            await self._run(readings)
        finally:
            await self.save_learned()

    async def save_learned(self) -> None:
        """Write what the baselines have learned (kept across restarts); a no-op without a
        store or before anything was learned."""
        if self._store is None:
            return
        levels = dict(self._saved)  # instances not built in this run keep what they had
        for inst in self._all_instances():
            found = learned_levels(inst.node)
            if found:
                levels[inst.alarm_id] = found
        if levels:
            self._saved = levels
            await asyncio.to_thread(self._store.save, levels, self._clock.time())

    async def _run(self, readings: Subscription) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            ticker = tg.create_task(self._ticker(), name="alarms.ticker")
            try:
                while True:
                    await self._take_messages(readings, await readings.get_batch())
            finally:
                self._tg = None
                ticker.cancel()
                for insts in self._instances.values():
                    for inst in insts:
                        inst.cancel_timer()

    async def _take_messages(self, readings: Subscription, batch: Sequence[Reading]) -> None:
        """Process ``batch`` message by message: runs of readings of one device and one
        receive time, continued by the batches already queued behind it (at most
        ``_MESSAGE_MAX`` readings). Batches are taken whole (one queue operation each, not one
        per reading), the next one only once this one is used up: urgent ones still go first."""
        message: list[Reading] = []
        pos = 0
        while True:
            if pos >= len(batch):
                if message and len(message) < _MESSAGE_MAX:
                    nxt = readings.get_batch_nowait()
                    if nxt is not None:
                        batch, pos = nxt, 0
                        continue
                if message:
                    await self.process_message(message)
                return
            reading = batch[pos]
            if message and (len(message) >= _MESSAGE_MAX or reading.device != message[0].device
                            or reading.received_ts != message[0].received_ts):
                await self.process_message(message)
                message = []
            message.append(reading)
            pos += 1

    async def reconfigure(self, config: GatewayConfig) -> tuple[int, int, int]:
        """Apply the rules and devices of ``config`` (its site must be the same).

        Returns:
            How many instances were kept unchanged, compiled afresh, and dropped.
        """
        async with self._lock:
            old = {i.alarm_id: i for insts in self._instances.values() for i in insts}
            # A changed instance is compiled afresh: it starts from what the old one learned.
            for alarm_id, inst in old.items():
                found = learned_levels(inst.node)
                if found:
                    self._saved[alarm_id] = found
            seen = list(self._instances)
            self._directory = DeviceDirectory(config.devices)
            self._rules = list(config.rules)
            self._instances, self._timed, self._groups_of = {}, [], {}
            self._readers = {}
            self._reuse = dict(old)
            try:
                self._build(config, seen)
            finally:
                self._reuse = {}
            now_insts = {i.alarm_id: i for insts in self._instances.values() for i in insts}
            fresh = [i for a, i in now_insts.items() if old.get(a) is not i]
            for alarm_id, inst in old.items():
                new = now_insts.get(alarm_id)
                if new is inst:
                    continue
                inst.cancel_timer()
                if new is not None and inst.active_event is not None:
                    new.active_event, new.since_wall = inst.active_event, inst.since_wall
            for table in (self._values, self._last_good, self._lost_since):
                for device_id in [d for d in table if self._directory.get(d) is None]:
                    del table[device_id]
            now = self._clock.monotonic()
            for dev_cfg in self._directory.configs():
                known = self._last_good.get(dev_cfg.id)
                if known is not None:  # points added to a device count from now
                    for point in dev_cfg.points:
                        known.setdefault(point.name, now)
            if self._tg is not None:
                for inst in fresh:
                    self.evaluations += 1
                    await self._evaluate(inst)
            dropped = sum(1 for a in old if a not in now_insts)
            return len(now_insts) - len(fresh), len(fresh), dropped

    async def process(self, reading: Reading) -> None:
        """Apply one reading and re-evaluate the rules of its device that read it."""
        await self.process_message([reading])

    async def process_message(self, readings: Sequence[Reading]) -> None:
        """Apply the readings of one message (all of one device), then re-evaluate, once
        each, the rules of that device that read any of them."""
        if not readings:
            return
        device = readings[0].device
        if any(r.device != device for r in readings):
            raise ValueError("process_message: readings of one device only")
        async with self._lock:
            await self._process(device, readings)

    async def _process(self, device: str, readings: Sequence[Reading]) -> None:
        now = self._clock.monotonic()
        values = self._values.setdefault(device, {})
        lost = self._lost_since.setdefault(device, {})
        last_good: dict[str, float] | None = None
        for reading in readings:
            point, quality = reading.point, reading.quality
            values[point] = reading
            if quality is _GOOD:
                if last_good is None:
                    last_good = self._last_good.setdefault(device, {})
                last_good[point] = now
            if quality is not _COMM_LOSS:
                if lost:
                    lost.pop(point, None)
            elif point not in lost:
                lost[point] = _silent_since(reading, now)
        readers = self._readers_of(device, readings, now) if device in self._readers else []
        for inst in self._instances_for(device):
            points = inst.points
            seen = readings if ALL_POINTS in points else [r for r in readings if r.point in points]
            if seen:
                for reading in seen:
                    inst.node.observe(reading, now)
                self.evaluations += 1
                await self._evaluate(inst)
                if inst in readers:
                    readers.remove(inst)  # judged once per message
        for inst in readers:
            self.evaluations += 1
            await self._evaluate(inst)

    # -- internals

    def _readers_of(self, device: str, readings: Sequence[Reading], now: float
                    ) -> list[_Instance]:
        """The instances of other devices whose condition reads any of ``readings``, once
        each, with the readings handed to their references to that device."""
        by_point = self._readers[device]
        found: dict[str, _Instance] = {}
        for reading in readings:
            for inst in (*by_point.get(reading.point, ()), *by_point.get(ALL_POINTS, ())):
                found.setdefault(inst.alarm_id, inst)
        for inst in found.values():
            for ref in inst.refs:
                if ref.device == device:
                    for reading in readings:
                        ref.observe_referenced(reading, now)
        return list(found.values())

    def _index_references(self, inst: _Instance) -> None:
        for device, points in inst.reads.items():
            by_point = self._readers.setdefault(device, {})
            for point in points:
                by_point.setdefault(point, []).append(inst)

    async def _ticker(self) -> None:
        next_save = self._clock.monotonic() + self._save_every
        while True:
            await self._clock.sleep(self._tick)
            async with self._lock:
                for inst in list(self._timed):
                    self.evaluations += 1
                    await self._evaluate(inst)
            if self._clock.monotonic() >= next_save:
                next_save = self._clock.monotonic() + self._save_every
                await self.save_learned()

    def _all_instances(self) -> list[_Instance]:
        """Every instance once (a group's is listed under each of its members)."""
        return list({i.alarm_id: i for insts in self._instances.values() for i in insts}
                    .values())

    def _instances_for(self, device_id: str) -> list[_Instance]:
        insts = self._instances.get(device_id)
        if insts is None:
            dev = self._directory.get(device_id)
            insts = [] if dev is None else [
                self._instance(rule, device_id, dev.name or device_id, dev.location)
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

    def _build(self, config: GatewayConfig, met: Sequence[str] = ()) -> None:
        """The instances of the current rules: groups, every device with a literal id (it
        exists from the start, so "no data since start" is stale), and the devices in ``met``
        (templated ones met so far) that still exist."""
        for rule in self._rules:
            if rule.group_by is not None:
                self._build_groups(rule, config)
        for dev in self._directory.configs():
            if not id_placeholders(dev.id):
                self._instances_for(dev.id)
        for device_id in met:
            if self._directory.get(device_id) is not None:
                self._instances_for(device_id)

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
            inst = self._instance(rule, label,
                                  f"{rule.kind or 'devices'} ({label}, {len(members)} devices)",
                                  location, tuple(members))
            for member in members:
                self._groups_of.setdefault(member, []).append(inst)
            if inst.node.time_dependent:
                self._timed.append(inst)

    def _instance(self, rule: RuleConfig, device_id: str, name: str, location: Location,
                  members: tuple[str, ...] = ()) -> _Instance:
        """A new instance, or while reconfiguring the old one if nothing it was built from
        changed."""
        old = self._reuse.pop(f"{rule.id}@{device_id}", None)
        resolve = self._resolver(device_id, location, members)
        targets = tuple(resolve(ref.device) for ref in references(rule.when)
                        if "{" in ref.device)
        if old is not None and (old.rule, old.name, old.location, old.members, old.targets) == (
                rule, name, location, members, targets):
            inst = old
        else:
            node = compile_condition(rule.when, members, resolve)
            restore_levels(node, self._saved.get(f"{rule.id}@{device_id}", ()))
            inst = _Instance(rule, node, device_id, name, location, members, targets)
            for ref in inst.refs:
                if ref.device is None:
                    log.warning("rule %s on %s: %r names no device here (its location or id "
                                "lacks a placeholder, or the id is not configured); that part "
                                "of the condition stays unknown", rule.id, device_id,
                                ref.written)
        if inst.reads:
            self._index_references(inst)
        return inst

    def _resolver(self, device_id: str, location: Location, members: tuple[str, ...]
                  ) -> Callable[[str], str | None]:
        """Fills a templated reference for one instance: from its location and (a device,
        not a group) its id's captures; an id no configured device has names nothing."""
        fields = reference_fields(location, {} if members else
                                  self._directory.captures(device_id))

        def resolve(template: str) -> str | None:
            found = fill_reference(template, fields)
            return found if found is not None and self._directory.get(found) is not None \
                else None

        return resolve

    def _context(self, device_id: str, now: float) -> Context:
        def other(device: str) -> Context:  # a group's member, or a referenced device
            return self._context(device, now)

        return Context(values=self._values.get(device_id, {}),
                       last_good=self._last_good.get(device_id, {}), mono=now,
                       wall=self._clock.time(), tz=self._tz, member=other,
                       lost_since=self._lost_since.get(device_id, {}),
                       offline=getattr(self._directory.get(device_id), "offline", None),
                       device=other)

    async def _evaluate(self, inst: _Instance) -> None:
        now = self._clock.monotonic()
        ctx = self._context(inst.device_id, now)
        result = inst.node.evaluate(ctx)
        if inst.active_event is None:
            if result is True and inst.timer is None:
                # Usually the condition starts now; comm-loss started at the last answer.
                onset = inst.node.since(ctx)
                start = now if onset is None else min(now, onset)
                inst.since_mono, inst.since_wall = start, self._clock.time() - (now - start)
                if start + inst.rule.for_ <= now:
                    await self._activate(inst)
                else:
                    self._start_timer(inst, start + inst.rule.for_, self._activate)
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
            async with self._lock:
                if inst.timer is not asyncio.current_task():
                    return  # replaced while waiting for the lock
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
        for device, points in inst.reads.items():  # labelled "device:point"
            theirs = self._values.get(device, {})
            evidence.update({f"{device}:{name}": (theirs[name].value if name in theirs else None)
                             for name in sorted(points - {ALL_POINTS})})
        # Messages may name any point of the device, not only those the rule reads.
        fields: dict[str, object] = {name: _display(r.value) for name, r in values.items()}
        fields.update(device=inst.device_id, device_name=inst.name,
                      members=len(inst.members))
        message_zh = self._referenced_values(rule.message.zh, inst)
        message_en = self._referenced_values(rule.message.en, inst)
        return Detection(
            alarm_id=inst.alarm_id,
            rule_id=rule.id,
            device=inst.device_id,
            device_name=inst.name,
            category=rule.category,
            priority=rule.priority,
            active=active,
            message_zh=_render(message_zh, {**fields, "location":
                                             format_location(inst.location, "zh-CN")}),
            message_en=_render(message_en, {**fields, "location":
                                             format_location(inst.location, "en")}),
            location=inst.location,
            ts=self._clock.time(),
            condition_since=inst.since_wall,
            mono=self._clock.monotonic(),
            evidence=evidence,
            work_order=rule.work_order,
        )

    def _referenced_values(self, template: str, inst: _Instance) -> str:
        """``{FACP-1-zone-{zone}:fire}`` (the reference as the rule writes it, a colon, a
        point of that device) filled with that device's latest value, "-" when none."""
        for ref in inst.refs:
            opening = "{" + ref.written + ":"
            if opening not in template:
                continue
            theirs = self._values.get(ref.device, {}) if ref.device is not None else {}

            def value(match: re.Match[str], theirs: Mapping[str, Reading] = theirs) -> str:
                reading = theirs.get(match.group(1))
                shown = str(_display(reading.value if reading is not None else None))
                return shown.replace("{", "{{").replace("}", "}}")

            template = re.sub(re.escape(opening) + r"([A-Za-z0-9][A-Za-z0-9_.\-]*)\}", value,
                              template)
        return template


@dataclass(eq=False)
class _Instance:
    rule: RuleConfig
    node: Node
    #: The device id, or for a group rule the group's label such as "zone:feeder-A".
    device_id: str
    name: str
    location: Location
    members: tuple[str, ...] = ()
    #: What each templated reference resolved to (None: nothing), to tell a reload's change.
    targets: tuple[str | None, ...] = ()
    points: set[str] = field(init=False)
    #: Points of other devices the condition reads (``device:``), by device.
    reads: dict[str, set[str]] = field(init=False)
    refs: list[OnDevice] = field(init=False)
    timer: asyncio.Task[None] | None = None
    active_event: Detection | None = None
    since_mono: float = 0.0
    since_wall: float = 0.0

    def __post_init__(self) -> None:
        self.points = condition_points(self.rule.when)
        self.refs = reference_nodes(self.node)
        self.reads = {}
        for ref in self.refs:  # concrete ids, filled for this instance
            if ref.device is not None:
                self.reads.setdefault(ref.device, set()).update(ref.points)

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


def _silent_since(reading: Reading, now: float) -> float:
    """The monotonic time a comm-loss reading's device went silent (its last answer).

    The driver states it on the wall clock; only the interval up to the reading's receipt is
    used (both ends from the driver's one clock), so a wall-clock step cannot move it. Without
    it, the silence starts now.
    """
    if reading.silent_since is None:
        return now
    return now - max(0.0, reading.received_ts - reading.silent_since)


def _applies(rule: RuleConfig, dev: DeviceConfig) -> bool:
    if rule.devices is not None:
        return dev.id in rule.devices
    return dev.kind == rule.kind


def _display(value: Value) -> object:
    """A value as the config writes it and a meter shows it: float32 registers carry noise
    digits (236.39999389648438), booleans read true/false, no value reads "-"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if value is None:
        return "-"
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
