"""The message the alarm stage hands to the next ones (work orders, console, upstream)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.config import Location
from gateway.model import Value

__all__ = ["AlarmEvent", "AlarmState", "Detection"]


class AlarmState(enum.StrEnum):
    #: The rule's condition has held for its on-delay.
    ACTIVE = "active"
    #: The condition has been false for its off-delay (ISA-18.2 "return to normal").
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm (a rule on a device)."""

    alarm_id: str
    rule_id: str
    device: str
    device_name: str
    category: str
    priority: str
    state: AlarmState
    message_zh: str
    message_en: str
    location: Location
    #: Wall-clock time of this transition.
    ts: float
    #: Wall-clock time at which the condition first became true (start of the on-delay).
    condition_since: float
    #: Monotonic time of this transition, for latency measurement on one machine.
    mono: float
    #: The points the rule read, with their values at the transition.
    evidence: dict[str, Value] = field(default_factory=dict)
    work_order: bool = True

    @property
    def life_safety(self) -> bool:
        return self.priority == "P0"


@dataclass(frozen=True, slots=True)
class Detection:
    """A rule's verdict on one device changed: its condition became (or stopped being) true,
    after the rule's on-delay (or off-delay).

    This is what rule evaluation hands to the alarm lifecycle, which decides what operators
    see (acknowledgement, latching, shelving, suppression) and emits :class:`AlarmEvent` s.
    """

    alarm_id: str
    rule_id: str
    device: str
    device_name: str
    category: str
    priority: str
    #: True: the condition holds (after ``for``); False: it has ended (after ``clear_for``).
    active: bool
    message_zh: str
    message_en: str
    location: Location
    ts: float
    condition_since: float
    mono: float
    evidence: dict[str, Value] = field(default_factory=dict)
    work_order: bool = True
