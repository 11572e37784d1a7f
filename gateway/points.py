"""Between the drivers and the bus: derived points and value expiry.

::

    drivers ──Reading──▶ PointStage ──Reading (+ derived, + expired)──▶ bus ──▶ alarms, console…

Every reading passes through unchanged. In addition:

* **Derived points** (a device's ``derived:``) are computed from the device's other points and
  published like any reading, so rules, messages, the journal and the console see them as
  points. They are computed once per *batch*: the readings a driver delivers in one go (one
  Modbus read, one MQTT message, handed over in one call) and go on with it, as one batch. So
  when two bits of one register change in the same poll, the derived value goes straight from
  the old combination to the new one, never through a mix of the two. Readings handed over
  one at a time form a batch until the driver pauses (this stage's task runs) or a point
  already in the batch is read again.
* **Quality**: a derived value has the worst quality of its inputs (comm-loss over bad over
  good), with the error of that input; its time is that of its newest input. Until every input
  has been read at least once it has no value at all (nothing is published), never a guess.
  An expression that fails (a division by zero, text where a number is needed) gives a BAD
  reading that says why.
* **Expiry** (an MQTT point's ``expire_after`` + ``expire_to``): an event point that has not
  had a message for ``expire_after`` seconds reads ``expire_to`` (a GOOD reading stamped with
  the time it expired) until its next message. A non-GOOD reading stops the countdown.

Back-pressure: publishing waits on the sink (the bus), as the drivers did before.

Memory: the last reading of each input of each device with derived points, for at most
``max_devices`` devices (templated MQTT ids can be many): the device updated longest ago is
forgotten first (counted in :attr:`PointStage.evicted`, logged once).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from drivers.base import ReadingSink
from gateway.aio import first_of
from gateway.clock import Clock
from gateway.config import DerivedPoint, DeviceConfig, MqttDevice, derived_order
from gateway.devices import DeviceDirectory
from gateway.expr import FUNCTIONS, Expression, ExpressionError, compile_expression
from gateway.model import Quality, Reading, Value

__all__ = ["PointStage", "derive_once"]

log = logging.getLogger(__name__)

#: Worse qualities rank higher: a derived value is as bad as its worst input.
_RANK = {Quality.GOOD: 0, Quality.BAD: 1, Quality.COMM_LOSS: 2}


def derive_once(device: DeviceConfig, device_id: str, readings: Iterable[Reading],
                clock: Clock) -> list[Reading]:
    """The derived points of ``device`` (as ``device_id``) from one set of readings, as the
    gateway would publish them after that poll; in dependency order. ``propgw read`` shows
    them next to the points they come from."""
    state = _State.build(device)
    if state is None or not device.derived:
        return []

    async def discard(_: Sequence[Reading], *, urgent: bool = False) -> None:
        return None

    for reading in readings:
        state.last[reading.point] = reading
    state.dirty = set(state.inputs)
    return PointStage([device], clock, discard)._derive(device_id, state)


class PointStage:
    """Adds derived points and expired values to the reading stream.

    Args:
        devices: The configured devices (disabled ones are ignored).
        clock: Time source for expiry deadlines and the expired readings' timestamps.
        sink: Where every batch goes on to (``bus.publish``).
        max_devices: At most this many devices' input values are kept.

    Use :meth:`publish` as the drivers' sink and run :meth:`run` alongside them.
    """

    def __init__(self, devices: Iterable[DeviceConfig], clock: Clock, sink: ReadingSink, *,
                 max_devices: int = 10_000) -> None:
        if max_devices < 1:
            raise ValueError(f"max_devices must be >= 1, got {max_devices}")
        self._directory = DeviceDirectory(devices)
        #: No device has derived or expiring points: batches go straight on, untouched.
        self._passthrough = not self.needed
        self._clock = clock
        self._sink = sink
        self._max_devices = max_devices
        #: Per concrete device id; None: nothing to do for it (passes straight through).
        self._states: collections.OrderedDict[str, _State | None] = collections.OrderedDict()
        self._pending: dict[str, None] = {}  # devices with a batch not yet derived
        self._deadlines: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._failing: set[tuple[str, str]] = set()
        self.evicted = 0
        #: Derived and expired readings published.
        self.derived = 0
        self.expired = 0

    @property
    def needed(self) -> bool:
        """Whether any enabled device has derived or expiring points (else the stage is a
        plain pass-through and need not run)."""
        return any(_State.build(dev) is not None for dev in self._directory.configs())

    def reconfigure(self, devices: Iterable[DeviceConfig]) -> None:
        """Take a reloaded config's devices. What was held is dropped: each device's derived
        points come back after every input has been read again (a poll or a message), so a
        changed expression never mixes old and new inputs; expiry countdowns start again with
        each point's next message."""
        self._directory = DeviceDirectory(devices)
        self._passthrough = not self.needed
        self._states.clear()
        self._pending.clear()
        self._deadlines.clear()
        self._heap.clear()
        self._failing.clear()
        if self._wake is not None:
            self._wake.set()

    async def publish(self, readings: Reading | Sequence[Reading], *,
                      urgent: bool = False) -> None:
        """Pass a driver's batch on, with the derived points it gives, as one batch.

        Args:
            readings: The readings of one message or poll block. A single reading (not in a
                sequence) is one of a batch delivered reading by reading: its derived points
                follow once the driver pauses or a point of the batch is read again.
            urgent: Life-safety readings (passed on to the bus).
        """
        if self._passthrough:
            await self._sink((readings,) if isinstance(readings, Reading) else readings,
                             urgent=urgent)
            return
        if isinstance(readings, Reading):
            await self._publish_one(readings, urgent=urgent)
            return
        out: list[Reading] | None = None  # a copy only when something is added
        touched: dict[str, _State] = {}
        device: str | None = None
        state: _State | None = None
        for i, reading in enumerate(readings):
            if reading.device != device:  # a batch is mostly one device's readings
                device = reading.device
                state = self._state(device)
            if state is None:
                if out is not None:
                    out.append(reading)
                continue
            if reading.point in state.expiring:
                self._arm(state, reading)
            if reading.point in state.inputs:
                if reading.point in state.dirty:
                    derived = self._derive(reading.device, state)
                    if derived:
                        out = list(readings[:i]) if out is None else out
                        self._count(derived)
                        out.extend(derived)
                state.last[reading.point] = reading
                touched[reading.device] = state
                state.dirty.add(reading.point)
            if out is not None:
                out.append(reading)
        for device_id, state in touched.items():
            if state.dirty:
                derived = self._derive(device_id, state)
                if derived:
                    out = list(readings) if out is None else out
                    self._count(derived)
                    out.extend(derived)
        await self._sink(readings if out is None else out, urgent=urgent)

    async def _publish_one(self, reading: Reading, *, urgent: bool) -> None:
        state = self._state(reading.device)
        if state is not None:
            if reading.point in state.expiring:
                self._arm(state, reading)
            if reading.point in state.inputs:
                if reading.point in state.dirty:
                    await self._emit(self._derive(reading.device, state))
                state.last[reading.point] = reading
                state.dirty.add(reading.point)
                self._pending[reading.device] = None
                if self._wake is not None:
                    self._wake.set()
        await self._sink((reading,), urgent=urgent)

    async def run(self) -> None:
        """Derive after each batch and publish expired values, until cancelled."""
        self._wake = wake = asyncio.Event()
        try:
            while True:
                wake.clear()
                await self._flush()
                await self._expire_due()
                if wake.is_set():
                    continue
                deadline = self._next_deadline()
                if deadline is None:
                    await wake.wait()
                else:
                    await first_of(wake.wait(), self._clock.sleep_until(deadline))
        finally:
            self._wake = None

    # -- derived points

    def _state(self, device_id: str) -> _State | None:
        if device_id in self._states:
            self._states.move_to_end(device_id)
            return self._states[device_id]
        dev = self._directory.get(device_id)
        state = None if dev is None else _State.build(dev)
        if len(self._states) >= self._max_devices:
            self._evict()
        self._states[device_id] = state
        return state

    def _evict(self) -> None:
        device_id, state = self._states.popitem(last=False)
        self._pending.pop(device_id, None)
        if state is not None:
            for point in state.expiring:
                self._deadlines.pop((device_id, point), None)
        self.evicted += 1
        if self.evicted == 1:
            log.warning("derived points: more than %d devices; forgetting the inputs of the one "
                        "updated longest ago (counted, logged once)", self._max_devices)

    async def _flush(self) -> None:
        while self._pending:
            device_id = next(iter(self._pending))
            state = self._states.get(device_id)
            if state is None:
                self._pending.pop(device_id, None)
                continue
            await self._emit(self._derive(device_id, state))

    def _derive(self, device_id: str, state: _State) -> list[Reading]:
        """The derived readings of the device's current batch (without awaiting anything, so
        a batch is derived from one consistent set of values), and the batch ends."""
        self._pending.pop(device_id, None)
        changed, state.dirty = state.dirty, set()
        out: list[Reading] = []
        for rule in state.order:
            if not rule.inputs & changed:
                continue
            reading = self._compute(device_id, rule, state.last)
            if reading is None:
                continue
            state.last[rule.point.name] = reading
            changed.add(rule.point.name)
            out.append(reading)
        return out

    def _compute(self, device_id: str, rule: _Derivation,
                 last: dict[str, Reading]) -> Reading | None:
        inputs = [last.get(name) for name in sorted(rule.inputs)]
        present = [r for r in inputs if r is not None]
        newest = max((r.received_ts for r in present), default=self._clock.time())
        source_ts = max((r.source_ts for r in present if r.source_ts is not None), default=None)
        name = rule.point.name
        worst = max(present, key=lambda r: _RANK[r.quality], default=None)
        if worst is not None and not worst.good:
            # Comm-loss timing counts from the earliest silence among the inputs.
            silent = [r.silent_since for r in present if r.silent_since is not None]
            return Reading(device_id, name, None, worst.quality, newest, source_ts,
                           error=f"{worst.point}: {worst.error or worst.quality.value}",
                           silent_since=min(silent, default=None))
        if len(present) < len(inputs):
            return None  # an input has no value yet: no value rather than a guess
        try:
            value = rule.evaluate({r.point: r.value for r in present})
        except ExpressionError as exc:
            self._report(device_id, name, str(exc))
            return Reading(device_id, name, None, Quality.BAD, newest, source_ts,
                           error=str(exc))
        if (device_id, name) in self._failing:
            self._failing.discard((device_id, name))
            log.info("derived point %s.%s has a value again", device_id, name)
        return Reading(device_id, name, value, Quality.GOOD, newest, source_ts)

    def _report(self, device_id: str, name: str, reason: str) -> None:
        key = (device_id, name)
        level = logging.DEBUG if key in self._failing else logging.WARNING
        self._failing.add(key)
        log.log(level, "derived point %s.%s cannot be computed: %s", device_id, name, reason)

    async def _emit(self, readings: list[Reading]) -> None:
        if readings:
            self._count(readings)
            await self._sink(readings)

    def _count(self, derived: list[Reading]) -> None:
        self.derived += len(derived)

    # -- expiry

    def _arm(self, state: _State, reading: Reading) -> None:
        key = (reading.device, reading.point)
        after, to = state.expiring[reading.point]
        if not reading.good or _same(reading.value, to):
            self._deadlines.pop(key, None)
            return
        deadline = self._clock.monotonic() + after
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), *key))
        if self._wake is not None:
            self._wake.set()

    def _next_deadline(self) -> float | None:
        while self._heap:
            deadline, _, device_id, point = self._heap[0]
            if self._deadlines.get((device_id, point)) == deadline:
                return deadline
            heapq.heappop(self._heap)  # re-armed or stopped since
        return None

    async def _expire_due(self) -> None:
        now = self._clock.monotonic()
        while (deadline := self._next_deadline()) is not None and deadline <= now:
            _, _, device_id, point = heapq.heappop(self._heap)
            del self._deadlines[(device_id, point)]
            state = self._states.get(device_id)
            if state is None:
                continue
            _, to = state.expiring[point]
            self.expired += 1
            log.debug("%s.%s: no message for %gs; it reads %r until the next one", device_id,
                      point, state.expiring[point][0], to)
            await self.publish((Reading(device_id, point, to, Quality.GOOD, self._clock.time()),))


@dataclass(frozen=True, slots=True, eq=False)
class _Derivation:
    """One derived point, ready to compute."""

    point: DerivedPoint
    inputs: frozenset[str]
    expression: Expression | None

    @classmethod
    def build(cls, point: DerivedPoint) -> _Derivation:
        expression = None if point.expr is None else compile_expression(point.expr)
        inputs = point.inputs() if expression is None else expression.names
        return cls(point, inputs, expression)

    def evaluate(self, values: dict[str, Value]) -> Value:
        point = self.point
        if self.expression is not None:
            value = self.expression.evaluate(values)
        else:
            assert point.from_ is not None
            value = values[point.from_]
            if point.bit is not None:
                try:
                    value = FUNCTIONS["bit"](value, point.bit)
                except ExpressionError as exc:
                    raise ExpressionError(f"{point.from_}: {exc}") from None
        if point.map is None:
            return value
        for key in _map_keys(value):
            if key in point.map:
                return point.map[key]
        return value if point.default is None else point.default


@dataclass(slots=True, eq=False)
class _State:
    """One concrete device: its derivations and the last value of each input."""

    order: list[_Derivation]
    inputs: frozenset[str]
    #: point -> (expire_after, expire_to)
    expiring: dict[str, tuple[float, Value]]
    last: dict[str, Reading] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, dev: DeviceConfig) -> _State | None:
        expiring: dict[str, tuple[float, Value]] = {}
        if isinstance(dev, MqttDevice):
            expiring = {p.name: (p.expire_after, p.expire_to) for p in dev.points
                        if p.expire_after is not None and p.expire_to is not None}
        if not dev.derived and not expiring:
            return None
        order = [_Derivation.build(d) for d in derived_order(dev.derived)]
        inputs = frozenset().union(*(d.inputs for d in order))
        return cls(order, inputs, expiring)


def _same(value: Value, other: Value) -> bool:
    if isinstance(value, str) or isinstance(other, str):
        return str(value) == str(other)
    return value == other


def _map_keys(value: Value) -> tuple[str, ...]:
    """How a value is looked up in a map: as the config writes keys (``true`` also as ``1``,
    ``2.0`` as ``2``), like a point's own map."""
    if isinstance(value, bool):
        return ("true", "1") if value else ("false", "0")
    if isinstance(value, float) and value.is_integer():
        return (str(int(value)),)
    return (str(value),)
