"""One alarm's lifecycle state: the record the alarm book keeps, journals and restores.

The ISA-18.2 state is not one variable but several orthogonal ones (as in OPC UA Part 9):
the condition, the acknowledgement, the latch, and three ways of hiding the alarm (shelved,
suppressed by design, out of service). :attr:`AlarmRecord.lifecycle` folds them into the one
:class:`LifecycleState` shown to people.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gateway.alarms._events import AlarmEvent, AlarmState, Detection, LifecycleState, Transition
from gateway.config import Location
from gateway.model import Value

__all__ = ["TIMERS", "AlarmRecord", "Hold", "Shelf", "event_from_json", "event_to_json"]

#: The record's timers, by kind (see :meth:`AlarmRecord.deadline`).
TIMERS = ("realarm", "close", "chatter", "shelf")

#: Field metadata: kept for this run only, never journaled.
_RUN_ONLY = {"journal": False}


@dataclass(frozen=True, slots=True)
class Hold:
    """Who hid an alarm (out of service), when and why."""

    actor: str
    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class Shelf:
    """An operator's shelving: for ``until - since`` seconds, and for ``one_shot`` until the
    next return to normal as well (whichever comes first). Both are wall times."""

    actor: str
    reason: str
    since: float
    until: float
    one_shot: bool = False


@dataclass(slots=True)
class AlarmRecord:
    """Everything the lifecycle knows about one alarm (a rule on a device).

    Deadlines (``realarm_at``, ``close_at``, ``chatter_until``, ``shelf.until``) and
    ``activations`` are wall times: they are journaled and shown to people. Elapsed time is
    measured on their monotonic twins (``mono_deadlines``, ``mono_activations``), which only
    live as long as the process; after a restart the book derives them again from the wall
    times.
    """

    alarm_id: str
    rule_id: str
    device: str
    device_name: str
    category: str
    priority: str
    location: Location
    message_zh: str = ""
    message_en: str = ""
    evidence: dict[str, Value] = field(default_factory=dict)
    work_order: bool = True
    #: The rule's condition holds (as last reported by rule evaluation).
    condition: bool = False
    condition_since: float = 0.0
    #: Wall time of the latest activation.
    activated_at: float = 0.0
    #: Nothing left to acknowledge; a normal alarm counts as acknowledged.
    acked: bool = True
    #: A latching alarm returned to normal and awaits an operator reset.
    latched: bool = False
    incident_id: str = ""
    occurrences: int = 0
    #: Consumers last received ACTIVE for this alarm (and have not received CLEARED since).
    announced: bool = False
    #: Consumers received ACTIVE at least once during the current incident.
    shown: bool = False
    shelf: Shelf | None = None
    suppressed_by: str | None = None
    out_of_service: Hold | None = None
    chattering: bool = False
    #: Wall times of recent activations, for chatter detection.
    activations: list[float] = field(default_factory=list)
    flood_group: str | None = None
    realarm_at: float | None = None
    close_at: float | None = None
    chatter_until: float | None = None
    #: By timer kind: (the wall deadline, its monotonic time on this run).
    mono_deadlines: dict[str, tuple[float, float]] = field(
        default_factory=dict, compare=False, repr=False, metadata=_RUN_ONLY)
    #: Monotonic times of ``activations`` on this run, in the same order.
    mono_activations: list[float] = field(
        default_factory=list, compare=False, repr=False, metadata=_RUN_ONLY)

    @classmethod
    def from_detection(cls, d: Detection) -> AlarmRecord:
        return cls(alarm_id=d.alarm_id, rule_id=d.rule_id, device=d.device,
                   device_name=d.device_name, category=d.category, priority=d.priority,
                   location=d.location, message_zh=d.message_zh, message_en=d.message_en,
                   evidence=dict(d.evidence), work_order=d.work_order)

    def copy(self) -> AlarmRecord:
        return dataclasses.replace(self, evidence=dict(self.evidence),
                                   activations=list(self.activations),
                                   mono_deadlines=dict(self.mono_deadlines),
                                   mono_activations=list(self.mono_activations))

    def deadline(self, kind: str) -> float | None:
        """The wall deadline of timer ``kind`` (one of :data:`TIMERS`), None when unset."""
        if kind == "shelf":
            return None if self.shelf is None else self.shelf.until
        return {"realarm": self.realarm_at, "close": self.close_at,
                "chatter": self.chatter_until}[kind]

    @property
    def base_state(self) -> LifecycleState:
        """The state ignoring shelving, suppression and out of service (ISA-18.2 A-E)."""
        if self.condition:
            return LifecycleState.ACTIVE_ACK if self.acked else LifecycleState.ACTIVE_UNACK
        if self.latched:
            return LifecycleState.LATCHED
        return LifecycleState.NORMAL if self.acked else LifecycleState.RTN_UNACK

    @property
    def lifecycle(self) -> LifecycleState:
        if self.out_of_service is not None:
            return LifecycleState.OUT_OF_SERVICE
        if self.shelf is not None:
            return LifecycleState.SHELVED
        if self.suppressed_by is not None:
            return LifecycleState.SUPPRESSED
        return self.base_state

    @property
    def hidden(self) -> bool:
        """Shelved, suppressed, out of service or grouped in a flood: not announced."""
        return (self.out_of_service is not None or self.shelf is not None
                or self.suppressed_by is not None or self.flood_group is not None)

    @property
    def incident_open(self) -> bool:
        return self.base_state is not LifecycleState.NORMAL

    @property
    def plain(self) -> bool:
        """Normal with nothing pending: no need to keep it in the journal's alarm table."""
        return (not self.incident_open and not self.hidden and not self.announced
                and not self.chattering and self.close_at is None and self.realarm_at is None)

    def event(self, transition: Transition, *, ts: float, mono: float, actor: str = "system",
              reason: str = "", announced: bool = False,
              flood_group: str | None = None) -> AlarmEvent:
        """This alarm's state as an :class:`AlarmEvent` for ``transition``."""
        return AlarmEvent(
            alarm_id=self.alarm_id, rule_id=self.rule_id, device=self.device,
            device_name=self.device_name, category=self.category, priority=self.priority,
            state=AlarmState.ACTIVE if self.condition else AlarmState.CLEARED,
            message_zh=self.message_zh, message_en=self.message_en, location=self.location,
            ts=ts, condition_since=self.condition_since, mono=mono,
            evidence=dict(self.evidence), work_order=self.work_order,
            lifecycle=self.lifecycle, transition=transition, incident_id=self.incident_id,
            occurrences=max(self.occurrences, 1), actor=actor, reason=reason,
            chattering=self.chattering,
            flood_group=flood_group if flood_group is not None else self.flood_group,
            announced=announced, latched=self.latched)

    # -- persistence

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("journal", True)}
        data["location"] = self.location.model_dump(exclude_none=True)
        for name in ("shelf", "out_of_service"):
            value = data[name]
            data[name] = None if value is None else dataclasses.asdict(value)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlarmRecord:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["location"] = Location.model_validate(data.get("location") or {})
        if data.get("shelf") is not None:
            data["shelf"] = Shelf(**data["shelf"])
        if data.get("out_of_service") is not None:
            data["out_of_service"] = Hold(**data["out_of_service"])
        return cls(**data)


def event_to_json(event: AlarmEvent) -> dict[str, Any]:
    """An :class:`AlarmEvent` as JSON-able data (the journal's copy of it)."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    data["location"] = event.location.model_dump(exclude_none=True)
    data["state"] = event.state.value
    data["lifecycle"] = None if event.lifecycle is None else event.lifecycle.value
    data["transition"] = None if event.transition is None else event.transition.value
    data.pop("seq")
    return data


def event_from_json(data: dict[str, Any], seq: int = 0) -> AlarmEvent:
    """Inverse of :func:`event_to_json`."""
    data = dict(data)
    data["location"] = Location.model_validate(data.get("location") or {})
    data["state"] = AlarmState(data["state"])
    data["lifecycle"] = None if data.get("lifecycle") is None else LifecycleState(
        data["lifecycle"])
    data["transition"] = None if data.get("transition") is None else Transition(
        data["transition"])
    known = {f.name for f in dataclasses.fields(AlarmEvent)}
    return AlarmEvent(**{k: v for k, v in data.items() if k in known}, seq=seq)
