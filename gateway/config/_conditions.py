"""Rule conditions: the small language rules are written in.

Leaves compare one point (``{point: v, gt: 242, deadband: 2}``), watch data age or quality
(``{stale: 5m}``, ``{comm_loss: true}``), rate of change (``{point: t, rate_gt: 5, per: 1m}``),
count events in a sliding window (``{point: event, count: invalid_card, at_least: 5,
within: 60s}``), catch a change as it happens (``{point: open, becomes: true, while:
{point: locked, eq: true}}``) or the time of day (``{schedule: {from: "00:00", to: "06:00"}}``);
``all``, ``any`` and ``not`` combine them. A ``device:`` key judges a condition on another
device (``{device: fire-panel-1, point: zone3_state, eq: FIRE}``, see :class:`DeviceRefCondition`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from gateway.config._types import Duration, Identifier

__all__ = [
    "ALL_POINTS",
    "CONDITION_TAGS",
    "AllCondition",
    "AllDevicesCondition",
    "AnyCondition",
    "AnyDeviceCondition",
    "BaselineCondition",
    "CommLossCondition",
    "Condition",
    "CounterCondition",
    "DeviceRefCondition",
    "EdgeCondition",
    "NotCondition",
    "PointCondition",
    "QualityCondition",
    "QualityName",
    "RateCondition",
    "ScheduleCondition",
    "ScheduleWindow",
    "StaleCondition",
    "condition_model",
    "condition_points",
    "edge_holds",
    "references",
    "uses_quantifiers",
    "walk",
]

Value = bool | int | float | str
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: ``condition_points`` returns this when a leaf watches every point of the device.
ALL_POINTS = "*"


class _Model(BaseModel):
    # Finite numbers only, as in StrictModel: `gt: .nan` would never match.
    # defer_build: the condition tree is recursive, and building each node's validator at
    # import (model_rebuild of every node) generated the whole tree's schema seven times;
    # deferred, RuleConfig builds it once and a node builds its own only if used alone.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False, defer_build=True)


class PointCondition(_Model):
    """Compares one point's value; exactly one operator."""

    point: Identifier
    eq: Value | None = None
    ne: Value | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    in_: list[Value] | None = Field(default=None, alias="in")
    deadband: float | None = Field(
        default=None, ge=0,
        description="Hysteresis for gt/ge/lt/le: once true, stays true until the value is "
                    "this far back on the other side of the limit.")

    @model_validator(mode="after")
    def _one_operator(self) -> PointCondition:
        ops = [op for op in ("eq", "ne", "gt", "ge", "lt", "le", "in_")
               if getattr(self, op) is not None]
        if len(ops) != 1:
            raise ValueError("a point condition needs exactly one of eq, ne, gt, ge, lt, le, "
                             f"in; got {', '.join(o.rstrip('_') for o in ops) or 'none'}")
        if self.deadband is not None and ops[0] not in ("gt", "ge", "lt", "le"):
            raise ValueError("deadband goes with gt, ge, lt or le")
        return self


class StaleCondition(_Model):
    """True when the point (or, without ``point``, every point of the device) has had no good
    reading for ``stale`` seconds. Never unknown: silence is exactly what it detects."""

    stale: Duration = Field(gt=0)
    point: Identifier | None = None


class CommLossCondition(_Model):
    """True while the point's (or, without ``point``, any point's) latest reading is
    comm-loss: the device does not answer."""

    comm_loss: Literal[True]
    point: Identifier | None = None


QualityName = Literal["good", "bad", "comm-loss", "stale", "uncertain"]


def _as_list(value: Any) -> Any:
    """``quality: bad`` is short for ``quality: [bad]``."""
    return [value] if isinstance(value, str) else value


class QualityCondition(_Model):
    """True while the point's (or, without ``point``, any point's) data has one of the named
    qualities: ``bad`` (the device answered but the value cannot be decoded: a Modbus
    exception, a malformed payload), ``comm-loss`` (the device does not answer), ``stale`` (no
    good reading for ``after``), ``uncertain`` (no good value now: bad, comm-loss or never
    read) or ``good``. Never unknown: the quality is what it looks at."""

    quality: Annotated[list[QualityName], BeforeValidator(_as_list)] = Field(
        description="one quality, or a list: true when the data has any of them")
    point: Identifier | None = None
    after: Duration | None = Field(
        default=None, gt=0,
        description="with stale: how long without a good reading makes the data stale")

    @model_validator(mode="after")
    def _stale_has_after(self) -> QualityCondition:
        if not self.qualities():
            raise ValueError("quality needs at least one of good, bad, comm-loss, stale, "
                             "uncertain")
        if "stale" in self.qualities() and self.after is None:
            raise ValueError("quality: stale needs after: DURATION (how long without a good "
                             "reading), e.g. {quality: stale, point: voltage_l1, after: 5m}")
        if self.after is not None and "stale" not in self.qualities():
            raise ValueError("after goes with quality: stale")
        return self

    def qualities(self) -> frozenset[str]:
        """The qualities named, as a set."""
        return frozenset(self.quality)


class RateCondition(_Model):
    """Change of a numeric point per ``per`` seconds, over the last ``per`` seconds."""

    point: Identifier
    rate_gt: float | None = None
    rate_lt: float | None = None
    rate_abs_gt: float | None = None
    per: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_operator(self) -> RateCondition:
        ops = [o for o in ("rate_gt", "rate_lt", "rate_abs_gt") if getattr(self, o) is not None]
        if len(ops) != 1:
            raise ValueError("a rate condition needs exactly one of rate_gt, rate_lt, "
                             "rate_abs_gt")
        return self


class CounterCondition(_Model):
    """At least ``at_least`` matching readings of ``point`` within ``within`` seconds."""

    point: Identifier
    count: Value | list[Value] = Field(description="value (or list of values) to count")
    at_least: int = Field(ge=1)
    within: Duration = Field(gt=0)
    mode: Literal["readings", "transitions"] = Field(
        default="readings",
        description="readings: every matching reading counts (event messages); transitions: "
                    "only changes into a matching value count (door cycles on a polled point)")
    reset: PointCondition | None = Field(
        default=None,
        description="start counting afresh whenever this holds, e.g. {point: car_status, "
                    "eq: 1} to count door cycles within one stop")


class EdgeCondition(_Model):
    """True for ``hold`` seconds after the point changed into ``becomes`` (from ``from`` when
    given), if ``while`` held at that instant: "the door opened while locked".

    A change is an instant, so the leaf stays true for ``hold`` afterwards; that is what lets
    ``for``, ``clear_for`` and ``all`` work with it. The first reading after start-up, or after
    a reading that was not good, is not a change: what happened in between is unknown.
    """

    point: Identifier
    becomes: Value
    from_: Value | None = Field(default=None, alias="from",
                                description="only a change from this value counts")
    while_: Condition | None = Field(
        default=None, alias="while",
        description="judged once, at the instant of the change (with the other values of the "
                    "same message); the change counts only if it is definitely true")
    hold: Duration = Field(default=5.0, gt=0, le=86400,
                           description="how long the leaf stays true after the change")


class ScheduleWindow(_Model):
    from_: str = Field(alias="from", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    to: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
    days: list[Weekday] | None = Field(default=None, description="default: every day")

    def minutes(self) -> tuple[int, int]:
        def parse(text: str) -> int:
            hours, minutes = map(int, re.split(":", text))
            return hours * 60 + minutes

        return parse(self.from_), parse(self.to)


class ScheduleCondition(_Model):
    """True inside a daily time window in the site's time zone (may wrap past midnight)."""

    schedule: ScheduleWindow


class BaselineCondition(_Model):
    """True when the point is well above its own learned level (a rolling baseline).

    The baseline is an exponentially weighted average over about ``learn`` seconds, learned
    only inside ``during`` when given (e.g. the night hours), so "abnormal night consumption"
    compares tonight with previous nights, not with the day.
    """

    point: Identifier
    above_baseline: float = Field(gt=1, description="factor, e.g. 1.5 = 50 % above")
    min_excess: float = Field(default=0.0, ge=0,
                              description="and at least this much above, in the point's unit")
    learn: Duration = Field(default=7 * 86400.0, gt=0)
    min_samples: int = Field(default=30, ge=1,
                             description="unknown until this many readings were learned")
    during: ScheduleWindow | None = None
    only_during: bool = Field(
        default=False,
        description="with during: judge only readings taken inside the window (outside it "
                    "the condition is false), e.g. hourly consumption, stamped with the start "
                    "of its hour, is compared with the nights only for the night hours")

    @model_validator(mode="after")
    def _window_given(self) -> BaselineCondition:
        if self.only_during and self.during is None:
            raise ValueError("only_during goes with during: {from, to}")
        return self


class AllDevicesCondition(_Model):
    """In a ``group_by`` rule: true when the condition holds on every device of the group."""

    all_devices: Condition


class AnyDeviceCondition(_Model):
    """In a ``group_by`` rule: true when the condition holds on at least one device."""

    any_device: Condition


class AllCondition(_Model):
    """True when every member is true."""

    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    """True when at least one member is true."""

    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    """True when the member is false."""

    not_: Condition = Field(alias="not")


#: A device id that may hold ``{placeholders}`` filled from the rule's device.
DeviceTemplate = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^(?:[A-Za-z0-9]|\{[A-Za-z_][A-Za-z0-9_]*\})"
                r"(?:[A-Za-z0-9_.\-]|\{[A-Za-z_][A-Za-z0-9_]*\})*$",
        description="a device id; {name} placeholders are filled from the rule's device",
    ),
]

#: The internal key a reference keeps its condition under (hidden from error paths).
_REF_INNER = "device-condition"


class DeviceRefCondition(_Model):
    """A condition judged on another device: ``{device: fire-panel-1, point: zone3_state, eq:
    FIRE}`` is the point condition ``{point: zone3_state, eq: FIRE}`` on ``fire-panel-1``.

    Any condition may carry ``device:`` (a leaf, or ``all``/``any``/``not`` of leaves); every
    point in it is the referenced device's, read with the same quality rules as the rule's own
    points. The reference is written flat, as a key of the condition it qualifies, so it reads
    like the condition it is; the model keeps that condition under an internal key.
    """

    device: DeviceTemplate = Field(
        description="the id of the device whose points it reads; {zone}, {building}, "
                    "{floor}, {room} and the rule's device's id captures are filled per device")
    when: Condition = Field(alias=_REF_INNER)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and _REF_INNER not in data and "device" in data:
            return {"device": data["device"],
                    _REF_INNER: {k: v for k, v in data.items() if k != "device"}}
        return data

    @model_validator(mode="after")
    def _plain(self) -> DeviceRefCondition:
        kinds = {type(c) for c in walk(self.when)}
        if kinds & {AllDevicesCondition, AnyDeviceCondition, DeviceRefCondition}:
            raise ValueError("a condition on a referenced device cannot hold all_devices, "
                             "any_device or another device: reference; put references "
                             "inside all_devices/any_device instead")
        return self


# Tags are internal names; the loader hides them from error paths (CONDITION_TAGS).
_TAGS: tuple[tuple[str, str], ...] = (
    ("device", "device-ref"),
    ("all", "all-of"), ("any", "any-of"), ("not", "not-of"), ("stale", "stale-check"),
    ("comm_loss", "comm-loss-check"), ("quality", "quality-check"),
    ("schedule", "schedule-check"), ("count", "counter"),
    ("rate_gt", "rate-check"), ("rate_lt", "rate-check"), ("rate_abs_gt", "rate-check"),
    ("above_baseline", "baseline-check"), ("becomes", "edge"), ("point", "point-check"),
    ("all_devices", "all-devices"), ("any_device", "any-device"),
)
CONDITION_TAGS = frozenset({*(tag for _, tag in _TAGS), _REF_INNER})
_MODEL_TAGS: dict[type[BaseModel], str] = {}


def _condition_tag(value: Any) -> str | None:
    # Pick the member by its key so an error is reported once, not once per union member.
    if isinstance(value, dict):
        return next((tag for key, tag in _TAGS if key in value), None)
    if isinstance(value, BaseModel):
        return _MODEL_TAGS.get(type(value))
    return None


Condition = Annotated[
    Annotated[PointCondition, Tag("point-check")]
    | Annotated[StaleCondition, Tag("stale-check")]
    | Annotated[CommLossCondition, Tag("comm-loss-check")]
    | Annotated[QualityCondition, Tag("quality-check")]
    | Annotated[RateCondition, Tag("rate-check")]
    | Annotated[CounterCondition, Tag("counter")]
    | Annotated[EdgeCondition, Tag("edge")]
    | Annotated[ScheduleCondition, Tag("schedule-check")]
    | Annotated[BaselineCondition, Tag("baseline-check")]
    | Annotated[AllCondition, Tag("all-of")]
    | Annotated[AnyCondition, Tag("any-of")]
    | Annotated[NotCondition, Tag("not-of")]
    | Annotated[AllDevicesCondition, Tag("all-devices")]
    | Annotated[AnyDeviceCondition, Tag("any-device")]
    | Annotated[DeviceRefCondition, Tag("device-ref")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition is {point: NAME, eq|ne|gt|ge|lt|le|in: VALUE}, "
                             "{stale: DURATION}, {comm_loss: true}, "
                             "{quality: bad|comm-loss|stale|uncertain|good, point: NAME}, "
                             "{point, rate_gt: X}, "
                             "{point, count: VALUE, at_least: N, within: DURATION}, "
                             "{point, becomes: VALUE}, "
                             "{schedule: {from: HH:MM, to: HH:MM}}, {all: [...]}, "
                             "{any: [...]}, {not: {...}}, {all_devices: {...}} or "
                             "{any_device: {...}}; any of them with device: ID reads "
                             "that device",
    ),
]

_MODEL_TAGS.update({PointCondition: "point-check", StaleCondition: "stale-check",
                    CommLossCondition: "comm-loss-check", QualityCondition: "quality-check",
                    RateCondition: "rate-check",
                    CounterCondition: "counter", EdgeCondition: "edge",
                    ScheduleCondition: "schedule-check",
                    BaselineCondition: "baseline-check",
                    AllCondition: "all-of", AnyCondition: "any-of", NotCondition: "not-of",
                    AllDevicesCondition: "all-devices", AnyDeviceCondition: "any-device",
                    DeviceRefCondition: "device-ref"})


def condition_model(value: Any) -> type[BaseModel] | None:
    """The condition model a YAML mapping is validated as (the member its keys select), so
    that an unknown key is reported against the fields of that model."""
    tag = _condition_tag(value)
    return next((model for model, t in _MODEL_TAGS.items() if t == tag), None)


def condition_points(cond: Condition) -> set[str]:
    """Point names a condition reads; ``"*"`` when it watches the whole device."""
    if isinstance(cond, AllCondition):
        return set().union(*(condition_points(c) for c in cond.all))
    if isinstance(cond, AnyCondition):
        return set().union(*(condition_points(c) for c in cond.any))
    if isinstance(cond, NotCondition):
        return condition_points(cond.not_)
    if isinstance(cond, AllDevicesCondition):
        return condition_points(cond.all_devices)
    if isinstance(cond, AnyDeviceCondition):
        return condition_points(cond.any_device)
    if isinstance(cond, ScheduleCondition | DeviceRefCondition):
        return set()  # a reference reads another device's points: see references()
    point = getattr(cond, "point", None)
    names = {point} if point is not None else {ALL_POINTS}
    if isinstance(cond, CounterCondition) and cond.reset is not None:
        names.add(cond.reset.point)
    if isinstance(cond, EdgeCondition) and cond.while_ is not None:
        names |= condition_points(cond.while_)
    return names


def walk(cond: Condition) -> Iterator[Condition]:
    """Every condition in the tree, the root first, depth first: ``all``/``any``/``not``, the
    quantifiers, an edge's ``while`` and the leaves.

    A reference (``device:``) is yielded but not entered: what it holds is judged on another
    device, so it is not the rule's own (``references`` lists them)."""
    yield cond
    children: list[Condition] = []
    if isinstance(cond, AllCondition):
        children = cond.all
    elif isinstance(cond, AnyCondition):
        children = cond.any
    elif isinstance(cond, NotCondition):
        children = [cond.not_]
    elif isinstance(cond, AllDevicesCondition):
        children = [cond.all_devices]
    elif isinstance(cond, AnyDeviceCondition):
        children = [cond.any_device]
    elif isinstance(cond, EdgeCondition) and cond.while_ is not None:
        children = [cond.while_]
    for child in children:
        yield from walk(child)


def edge_holds(cond: Condition) -> list[float]:
    """The ``hold`` of every edge leaf in the condition (to check a rule's ``for`` against),
    referenced devices' included."""
    return [c.hold for c in walk(cond) if isinstance(c, EdgeCondition)] + [
        hold for ref in references(cond) for hold in edge_holds(ref.when)]


def references(cond: Condition) -> list[DeviceRefCondition]:
    """Every ``device:`` reference in the condition, in tree order."""
    return [c for c in walk(cond) if isinstance(c, DeviceRefCondition)]


def uses_quantifiers(cond: Condition) -> bool:
    """Whether ``all_devices``/``any_device`` appear anywhere in the condition."""
    return any(isinstance(c, AllDevicesCondition | AnyDeviceCondition) for c in walk(cond))
