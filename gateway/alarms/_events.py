"""The message the alarm stage hands to the next ones (work orders, console, upstream)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.config import Location
from gateway.model import Value

__all__ = ["AlarmEvent", "AlarmState"]


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
