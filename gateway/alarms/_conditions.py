"""Rule conditions compiled to small evaluator trees, one tree per (rule, device).

Evaluation is three-valued: a comparison on a point whose latest reading is missing or not
GOOD is *unknown* (``None``), and ``all``/``any``/``not`` follow Kleene logic. A rule fires only
on a definite ``True``, so a silent sensor can neither raise nor clear an alarm by accident;
silence and data quality have their own leaves (``stale``, ``comm_loss``, ``quality``), which
are never unknown.

Some leaves keep state (deadband hysteresis, sliding-window counters, rate history), which is
why a tree is compiled per instance rather than shared.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from gateway.config import (
    AllCondition,
    AllDevicesCondition,
    AnyCondition,
    AnyDeviceCondition,
    BaselineCondition,
    CommLossCondition,
    Condition,
    CounterCondition,
    DeviceRefCondition,
    EdgeCondition,
    NotCondition,
    OfflineSetting,
    PointCondition,
    QualityCondition,
    RateCondition,
    ScheduleCondition,
    StaleCondition,
    condition_points,
)
from gateway.model import Quality, Reading, Value

__all__ = ["Context", "LearnedLevel", "Node", "OnDevice", "compile_condition", "learned_levels",
           "learns", "reference_nodes", "restore_levels", "site_zone"]

_ORDERED: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Context:
    """What a condition may look at: the device's latest readings, the time, the site zone."""

    values: Mapping[str, Reading]
    #: Monotonic time at which each point last had a GOOD reading (or the instance started).
    last_good: Mapping[str, float]
    mono: float
    wall: float
    tz: dt.tzinfo
    #: In a group rule: the context of one member device.
    member: Callable[[str], Context] | None = None
    #: Monotonic time since which each comm-loss point has been silent (its last answer).
    lost_since: Mapping[str, float] = field(default_factory=dict)
    #: The device's ``offline`` policy: what its silence means to ``stale`` (device-wide).
    offline: OfflineSetting | None = None
    #: The context of any other device, for conditions that reference one (``device:``).
    device: Callable[[str], Context] | None = None


class Node:
    """One compiled condition."""

    #: True when the result can change with time alone (no new reading needed).
    time_dependent = False

    def observe(self, reading: Reading, mono: float) -> None:
        """Called with every reading of the device, before evaluation."""

    def evaluate(self, ctx: Context) -> bool | None:
        raise NotImplementedError

    def verdicts(self) -> dict[str, bool | None]:
        """In a group rule: each member device's latest verdict (evidence for the alarm)."""
        return {}

    def since(self, ctx: Context) -> float | None:
        """Right after :meth:`evaluate` returned True: the monotonic time since which the
        condition has been true, when it is known to be earlier than now (``None``: now)."""
        return None


#: Fills a reference's ``{placeholders}`` for one instance: the concrete device id, or None
#: when it names no device there (see :func:`gateway.config.fill_reference`).
Resolver = Callable[[str], str | None]


def compile_condition(cond: Condition, members: Sequence[str] = (),
                      resolve: Resolver | None = None) -> Node:
    """Build a fresh evaluator tree for one (rule, device) or (rule, group) instance; a
    reference's device id is resolved once here, never per reading."""
    if isinstance(cond, AllCondition):
        return _All([compile_condition(c, members, resolve) for c in cond.all])
    if isinstance(cond, AnyCondition):
        return _Any([compile_condition(c, members, resolve) for c in cond.any])
    if isinstance(cond, NotCondition):
        return _Not(compile_condition(cond.not_, members, resolve))
    if isinstance(cond, AllDevicesCondition):
        return _EachDevice(cond.all_devices, members, every=True, resolve=resolve)
    if isinstance(cond, AnyDeviceCondition):
        return _EachDevice(cond.any_device, members, every=False, resolve=resolve)
    if isinstance(cond, PointCondition):
        return _Compare(cond)
    if isinstance(cond, StaleCondition):
        return _Stale(cond)
    if isinstance(cond, CommLossCondition):
        return _CommLoss(cond)
    if isinstance(cond, QualityCondition):
        return _Quality(cond)
    if isinstance(cond, RateCondition):
        return _Rate(cond)
    if isinstance(cond, CounterCondition):
        return _Counter(cond)
    if isinstance(cond, EdgeCondition):
        return _Edge(cond, compile_condition(cond.while_, members, resolve)
                     if cond.while_ is not None else None)
    if isinstance(cond, BaselineCondition):
        return _Baseline(cond)
    if isinstance(cond, DeviceRefCondition):
        device = cond.device if resolve is None or "{" not in cond.device \
            else resolve(cond.device)
        return OnDevice(device, compile_condition(cond.when), written=cond.device,
                        points=condition_points(cond.when))
    assert isinstance(cond, ScheduleCondition)
    return _Schedule(cond)


@dataclass(frozen=True, slots=True)
class LearnedLevel:
    """What one rolling baseline has learned: kept across restarts (a night baseline takes
    days to learn). ``key`` names what it was learned for (point, learning time, window), so a
    changed condition starts afresh instead of inheriting a level learned for something else."""

    key: str
    level: float
    samples: int


def learned_levels(node: Node) -> list[LearnedLevel]:
    """The levels the tree's baselines have learned so far, in tree order."""
    return [b.learned for b in _baselines(node) if b.learned is not None]


def learns(node: Node) -> bool:
    """Whether the tree has a rolling baseline (something worth keeping across restarts)."""
    return any(True for _ in _baselines(node))


def restore_levels(node: Node, saved: Iterable[LearnedLevel]) -> int:
    """Give the tree's baselines the levels an earlier run learned, matched by key; returns how
    many were restored."""
    by_key = {level.key: level for level in saved}
    restored = 0
    for baseline in _baselines(node):
        level = by_key.get(baseline.key)
        if level is not None and baseline.baseline is None:
            baseline.baseline, baseline.samples = level.level, level.samples
            restored += 1
    return restored


def _baselines(node: Node) -> Iterable[_Baseline]:
    if isinstance(node, _Baseline):
        yield node
    elif isinstance(node, _Group):
        for member in node.members:
            yield from _baselines(member)
    elif isinstance(node, _Edge) and node.guard is not None:
        yield from _baselines(node.guard)
    elif isinstance(node, _EachDevice):
        for inner in node.inner.values():
            yield from _baselines(inner)
    elif isinstance(node, OnDevice):
        yield from _baselines(node.inner)


class _Group(Node):
    def __init__(self, members: list[Node]) -> None:
        self.members = members
        self.time_dependent = any(m.time_dependent for m in members)

    def observe(self, reading: Reading, mono: float) -> None:
        for m in self.members:
            m.observe(reading, mono)

    def verdicts(self) -> dict[str, bool | None]:
        found: dict[str, bool | None] = {}
        for m in self.members:
            found.update(m.verdicts())
        return found


class _All(_Group):
    def evaluate(self, ctx: Context) -> bool | None:
        # Every member is evaluated (no short-circuit) so stateful leaves stay current.
        return _kleene_all([m.evaluate(ctx) for m in self.members])

    def since(self, ctx: Context) -> float | None:
        return _latest([m.since(ctx) for m in self.members])


class _Any(_Group):
    def __init__(self, members: list[Node]) -> None:
        super().__init__(members)
        self.results: list[bool | None] = []

    def evaluate(self, ctx: Context) -> bool | None:
        self.results = [m.evaluate(ctx) for m in self.members]
        return _kleene_any(self.results)

    def since(self, ctx: Context) -> float | None:
        return _earliest([m.since(ctx) for m, r in zip(self.members, self.results, strict=True)
                          if r is True])


class _Not(_Group):
    def __init__(self, inner: Node) -> None:
        super().__init__([inner])

    def evaluate(self, ctx: Context) -> bool | None:
        result = self.members[0].evaluate(ctx)
        return None if result is None else not result


class _EachDevice(Node):
    """``all_devices``/``any_device``: one inner tree per member device of the group."""

    def __init__(self, inner: Condition, members: Sequence[str], *, every: bool,
                 resolve: Resolver | None = None) -> None:
        self.every = every
        self.inner = {m: compile_condition(inner, (), resolve) for m in members}
        self.time_dependent = any(n.time_dependent for n in self.inner.values())
        #: Each member's latest result, kept as evidence for the alarm.
        self.results: dict[str, bool | None] = dict.fromkeys(members)

    def observe(self, reading: Reading, mono: float) -> None:
        node = self.inner.get(reading.device)
        if node is not None:
            node.observe(reading, mono)

    def evaluate(self, ctx: Context) -> bool | None:
        if ctx.member is None or not self.inner:
            return None
        for device, node in self.inner.items():
            self.results[device] = node.evaluate(ctx.member(device))
        values = list(self.results.values())
        return _kleene_all(values) if self.every else _kleene_any(values)

    def verdicts(self) -> dict[str, bool | None]:
        return dict(self.results)

    def since(self, ctx: Context) -> float | None:
        if ctx.member is None:
            return None
        member = ctx.member
        if self.every:
            return _latest([n.since(member(d)) for d, n in self.inner.items()])
        return _earliest([n.since(member(d)) for d, n in self.inner.items()
                          if self.results.get(d) is True])


class _Compare(Node):
    def __init__(self, cond: PointCondition) -> None:
        self.point = cond.point
        self.deadband = cond.deadband or 0.0
        self.was_true = False
        self.test: Callable[[Value], bool]
        if cond.eq is not None:
            expected = cond.eq
            self.test = lambda v: _same(v, expected)
        elif cond.ne is not None:
            unexpected = cond.ne
            self.test = lambda v: not _same(v, unexpected)
        elif cond.in_ is not None:
            options = list(cond.in_)
            self.test = lambda v: any(_same(v, o) for o in options)
        else:
            op_name, bound = next((op, getattr(cond, op)) for op in _ORDERED
                                  if getattr(cond, op) is not None)
            self.test = self._ordered(op_name, bound)

    def _ordered(self, op_name: str, bound: float) -> Callable[[Value], bool]:
        compare = _ORDERED[op_name]
        # Once true, the limit moves back by the deadband so a value hovering at the limit
        # does not chatter: high alarms release below bound - deadband, low ones above.
        back = -self.deadband if op_name in ("gt", "ge") else self.deadband

        def test(v: Value) -> bool:
            if not isinstance(v, int | float) or isinstance(v, bool):
                return False
            return compare(float(v), bound + back if self.was_true else bound)

        return test

    def evaluate(self, ctx: Context) -> bool | None:
        reading = ctx.values.get(self.point)
        if reading is None or not reading.good:
            return None
        self.was_true = self.test(reading.value)
        return self.was_true


class _Stale(Node):
    time_dependent = True

    def __init__(self, cond: StaleCondition) -> None:
        self.point, self.after = cond.point, cond.stale

    def evaluate(self, ctx: Context) -> bool | None:
        if self.point is not None:
            seen = ctx.last_good.get(self.point)
            return seen is None or ctx.mono - seen >= self.after
        after, alive = self.after, ctx.last_good
        if ctx.offline == "never":
            return False  # it reports only on change: silence says nothing
        if ctx.offline is not None:
            after = ctx.offline.after or after
            if ctx.offline.heartbeat:
                alive = {p: t for p, t in alive.items() if p in ctx.offline.heartbeat}
        if not alive:
            return False
        return ctx.mono - max(alive.values()) >= after


class _CommLoss(Node):
    def __init__(self, cond: CommLossCondition) -> None:
        self.point = cond.point

    def evaluate(self, ctx: Context) -> bool | None:
        if self.point is not None:
            reading = ctx.values.get(self.point)
            return reading is not None and reading.quality is Quality.COMM_LOSS
        return any(r.quality is Quality.COMM_LOSS for r in ctx.values.values())

    def since(self, ctx: Context) -> float | None:
        # Silent since the last answer, not since the first request that went unanswered.
        lost = [self.point] if self.point is not None else \
            [name for name, r in ctx.values.items() if r.quality is Quality.COMM_LOSS]
        return _earliest([ctx.lost_since.get(name) for name in lost])


class _Quality(Node):
    """``{quality: ..., point: P}``: the point's (any point's) data quality, never unknown.

    A comparison on the same point is unknown meanwhile, so a bad value still raises no
    threshold alarm; this leaf is what names the bad data itself (a data-quality order)."""

    def __init__(self, cond: QualityCondition) -> None:
        self.point, self.after = cond.point, cond.after or 0.0
        self.wanted = cond.qualities()
        self.time_dependent = "stale" in self.wanted

    def evaluate(self, ctx: Context) -> bool | None:
        if self.point is not None:
            return self._matches(ctx, self.point, unread=True)
        # Device-wide: a point never read (an event point that has not come yet) is not
        # "uncertain" for that alone; for stale every point counts from the start.
        names = ctx.values.keys() | (ctx.last_good.keys() if "stale" in self.wanted else set())
        return any(self._matches(ctx, name, unread=False) for name in sorted(names))

    def since(self, ctx: Context) -> float | None:
        # Like comm_loss: a device that does not answer has been silent since its last answer.
        if "comm-loss" not in self.wanted:
            return None
        names = [self.point] if self.point is not None else list(ctx.values)
        return _earliest([ctx.lost_since.get(name) for name in names
                          if (r := ctx.values.get(name)) is not None
                          and r.quality is Quality.COMM_LOSS])

    def _matches(self, ctx: Context, name: str, *, unread: bool) -> bool:
        reading = ctx.values.get(name)
        quality = None if reading is None else reading.quality
        if "good" in self.wanted and quality is Quality.GOOD:
            return True
        if "bad" in self.wanted and quality is Quality.BAD:
            return True
        if "comm-loss" in self.wanted and quality is Quality.COMM_LOSS:
            return True
        if "uncertain" in self.wanted and quality is not Quality.GOOD \
                and (reading is not None or unread):
            return True
        if "stale" in self.wanted:
            seen = ctx.last_good.get(name)
            return seen is None or ctx.mono - seen >= self.after
        return False


class _Rate(Node):
    time_dependent = True

    def __init__(self, cond: RateCondition) -> None:
        self.point, self.per = cond.point, cond.per
        self.history: deque[tuple[float, float]] = deque(maxlen=4096)
        if cond.rate_gt is not None:
            limit = cond.rate_gt
            self.test: Callable[[float], bool] = lambda r: r > limit
        elif cond.rate_lt is not None:
            low = cond.rate_lt
            self.test = lambda r: r < low
        else:
            assert cond.rate_abs_gt is not None
            absolute = cond.rate_abs_gt
            self.test = lambda r: abs(r) > absolute

    def observe(self, reading: Reading, mono: float) -> None:
        if reading.point == self.point and reading.good \
                and isinstance(reading.value, int | float) and not isinstance(reading.value, bool):
            self.history.append((mono, float(reading.value)))

    def evaluate(self, ctx: Context) -> bool | None:
        while self.history and ctx.mono - self.history[0][0] > self.per:
            self.history.popleft()
        if len(self.history) < 2:
            return None
        (t0, v0), (t1, v1) = self.history[0], self.history[-1]
        if t1 - t0 <= 0:
            return None
        return self.test((v1 - v0) / (t1 - t0) * self.per)


class _Counter(Node):
    time_dependent = True

    def __init__(self, cond: CounterCondition) -> None:
        self.point, self.at_least, self.within = cond.point, cond.at_least, cond.within
        wanted = cond.count if isinstance(cond.count, list) else [cond.count]
        self.matches: Callable[[Value], bool] = lambda v: any(_same(v, w) for w in wanted)
        self.transitions = cond.mode == "transitions"
        self.was_match = False
        self.hits: deque[float] = deque(maxlen=max(cond.at_least * 4, 64))
        self.reset = _Compare(cond.reset) if cond.reset is not None else None

    def observe(self, reading: Reading, mono: float) -> None:
        if self.reset is not None and reading.point == self.reset.point and reading.good \
                and self.reset.test(reading.value):
            self.hits.clear()
        if reading.point != self.point or not reading.good:
            return
        match = self.matches(reading.value)
        if match and not (self.transitions and self.was_match):
            self.hits.append(mono)
        self.was_match = match

    def evaluate(self, ctx: Context) -> bool | None:
        while self.hits and ctx.mono - self.hits[0] > self.within:
            self.hits.popleft()
        return len(self.hits) >= self.at_least


class _Edge(Node):
    """A change into ``becomes``; judged (with ``while``) at the first evaluation after it,
    which the engine runs once all readings of the same message are in."""

    time_dependent = True

    def __init__(self, cond: EdgeCondition, guard: Node | None) -> None:
        self.point, self.hold = cond.point, cond.hold
        target, origin = cond.becomes, cond.from_
        self.into: Callable[[Value], bool] = lambda v: _same(v, target)
        self.origin: Callable[[Value], bool] = \
            (lambda v: True) if origin is None else (lambda v: _same(v, origin))
        self.guard = guard
        self.previous: Value = None
        self.known = False  # whether ``previous`` is a value seen in a good reading
        self.pending: float | None = None  # a change observed, not yet judged
        self.until = -float("inf")  # true until this monotonic time

    def observe(self, reading: Reading, mono: float) -> None:
        if self.guard is not None:
            self.guard.observe(reading, mono)
        if reading.point != self.point:
            return
        if not reading.good:
            self.known = False
            return
        value = reading.value
        if self.known and not self.into(self.previous) and self.into(value) \
                and self.origin(self.previous):
            self.pending = mono
        self.previous, self.known = value, True

    def evaluate(self, ctx: Context) -> bool | None:
        guard = None if self.guard is None else self.guard.evaluate(ctx)
        if self.pending is not None:
            if self.guard is None or guard is True:
                self.until = self.pending + self.hold
            self.pending = None
        return ctx.mono < self.until


class _Baseline(Node):
    def __init__(self, cond: BaselineCondition) -> None:
        self.point, self.factor, self.excess = cond.point, cond.above_baseline, cond.min_excess
        self.learn, self.min_samples = cond.learn, cond.min_samples
        self.window = _Schedule(ScheduleCondition(schedule=cond.during)) if cond.during else None
        self.only_during = cond.only_during
        window = cond.during.model_dump(by_alias=True, mode="json") if cond.during else None
        self.key = f"{cond.point}|{cond.learn:g}|{window}"
        self.baseline: float | None = None
        self.samples = 0
        self.last_mono: float | None = None
        self.tz: dt.tzinfo = dt.UTC

    def observe(self, reading: Reading, mono: float) -> None:
        value = reading.value
        if reading.point != self.point or not reading.good or not isinstance(value, int | float) \
                or isinstance(value, bool):
            return
        if self.window is not None and not self.window.inside(reading.received_ts, self.tz):
            return
        # Time-weighted EWMA: a reading counts for the time since the previous one, so a fast
        # poll does not make the baseline forget faster.
        gap = 0.0 if self.last_mono is None else max(0.0, mono - self.last_mono)
        self.last_mono = mono
        alpha = 1.0 if self.baseline is None else min(1.0, max(gap, 1.0) / self.learn)
        self.baseline = float(value) if self.baseline is None \
            else self.baseline + alpha * (float(value) - self.baseline)
        self.samples += 1

    @property
    def learned(self) -> LearnedLevel | None:
        if self.baseline is None:
            return None
        return LearnedLevel(self.key, self.baseline, self.samples)

    def evaluate(self, ctx: Context) -> bool | None:
        self.tz = ctx.tz
        reading = ctx.values.get(self.point)
        if reading is not None and self.only_during and self.window is not None \
                and not self.window.inside(reading.received_ts, ctx.tz):
            return False
        if reading is None or not reading.good or self.baseline is None \
                or self.samples < self.min_samples:
            return None
        value = reading.value
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        return value > self.baseline * self.factor and value - self.baseline > self.excess


class OnDevice(Node):
    """A condition judged on another device (``device:``): on that device's readings, with
    the same three-valued logic, so a referenced point that is bad, missing or comm-loss makes
    a comparison unknown, never true.

    The tree's own :meth:`observe` does not reach it (those are the rule's device's
    readings); the evaluator hands it the referenced device's readings through
    :meth:`observe_referenced` (see :func:`reference_nodes`).

    ``device`` is None when a templated reference names no device for this instance (a door
    with no zone in its location): the condition is then unknown, whatever it says (even a
    ``stale`` leaf, which would otherwise read a device that never reports as stale).
    """

    def __init__(self, device: str | None, inner: Node, *, written: str | None = None,
                 points: frozenset[str] | set[str] = frozenset()) -> None:
        self.device = device
        self.inner = inner
        #: The reference as the rule writes it (``FACP-1-zone-{zone}``), for messages.
        self.written = written if written is not None else (device or "")
        #: The referenced points this condition reads ("*": any).
        self.points = frozenset(points)
        self.time_dependent = inner.time_dependent and device is not None

    def observe_referenced(self, reading: Reading, mono: float) -> None:
        if self.device is not None and reading.device == self.device:
            self.inner.observe(reading, mono)

    def evaluate(self, ctx: Context) -> bool | None:
        if ctx.device is None or self.device is None:
            return None
        return self.inner.evaluate(ctx.device(self.device))

    def since(self, ctx: Context) -> float | None:
        if ctx.device is None or self.device is None:
            return None
        return self.inner.since(ctx.device(self.device))


def reference_nodes(node: Node) -> list[OnDevice]:
    """Every reference in a compiled tree (each member's tree of a group included)."""
    if isinstance(node, OnDevice):
        return [node]
    if isinstance(node, _Group):
        return [ref for member in node.members for ref in reference_nodes(member)]
    if isinstance(node, _Edge) and node.guard is not None:
        return reference_nodes(node.guard)
    if isinstance(node, _EachDevice):
        return [ref for inner in node.inner.values() for ref in reference_nodes(inner)]
    return []


class _Schedule(Node):
    time_dependent = True

    def __init__(self, cond: ScheduleCondition) -> None:
        self.start, self.end = cond.schedule.minutes()
        self.days = set(cond.schedule.days or _WEEKDAYS)

    def evaluate(self, ctx: Context) -> bool | None:
        return self.inside(ctx.wall, ctx.tz)

    def inside(self, wall: float, tz: dt.tzinfo) -> bool:
        local = dt.datetime.fromtimestamp(wall, tz=tz)
        minute = local.hour * 60 + local.minute
        if self.start <= self.end:
            return _WEEKDAYS[local.weekday()] in self.days and self.start <= minute < self.end
        # Wraps midnight: 22:00-06:00 belongs to the day it started on.
        if minute >= self.start:
            return _WEEKDAYS[local.weekday()] in self.days
        if minute < self.end:
            return _WEEKDAYS[(local.weekday() - 1) % 7] in self.days
        return False


def site_zone(name: str) -> dt.tzinfo:
    """The site's time zone (falls back to UTC for an unknown name)."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return dt.UTC


def _same(value: Value, expected: Value) -> bool:
    """Equality that treats 1 == 1.0 == True as YAML authors expect, and text exactly."""
    if isinstance(value, str) or isinstance(expected, str):
        return str(value) == str(expected)
    return value == expected


def _latest(times: Iterable[float | None]) -> float | None:
    """When every part has been true: the latest onset (``None``, "now", wins)."""
    found = list(times)
    return None if not found or None in found else max(t for t in found if t is not None)


def _earliest(times: Iterable[float | None]) -> float | None:
    """When at least one part has been true: the earliest known onset."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _kleene_all(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for r in results:
        if r is False:
            return False
        if r is None:
            unknown = True
    return None if unknown else True


def _kleene_any(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for r in results:
        if r is True:
            return True
        if r is None:
            unknown = True
    return None if unknown else False
