"""The message the alarm stage hands to the next ones (work orders, console, upstream)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.config import Location
from gateway.model import Value

__all__ = ["AlarmEvent", "AlarmState", "Detection", "LifecycleState", "Transition"]


class AlarmState(enum.StrEnum):
    #: The rule's condition has held for its on-delay.
    ACTIVE = "active"
    #: The condition has been false for its off-delay (ISA-18.2 "return to normal").
    CLEARED = "cleared"


class LifecycleState(enum.StrEnum):
    """Where an alarm is in the ISA-18.2 / IEC 62682 state table (OPC UA Part 9 names).

    The first five are the base states (condition x acknowledgement x latch); the last three
    hide the alarm from operators and override the base state in :attr:`AlarmEvent.lifecycle`
    (out of service over shelved over suppressed), while the base state keeps being tracked.
    """

    #: A: condition normal, nothing to acknowledge.
    NORMAL = "normal"
    #: B: condition active, not yet acknowledged.
    ACTIVE_UNACK = "active_unacknowledged"
    #: C: condition active, acknowledged.
    ACTIVE_ACK = "active_acknowledged"
    #: D: condition returned to normal before anyone acknowledged it.
    RTN_UNACK = "returned_unacknowledged"
    #: E: a latching alarm whose condition returned to normal; needs an operator reset.
    LATCHED = "latched"
    #: F: an operator shelved it (timed or one-shot); evaluated and journaled, not announced.
    SHELVED = "shelved"
    #: G: suppressed by design (a suppression rule); evaluated and journaled, not announced.
    SUPPRESSED = "suppressed"
    #: H: out of service (maintenance); evaluated and journaled, not announced.
    OUT_OF_SERVICE = "out_of_service"


class Transition(enum.StrEnum):
    """Why an :class:`AlarmEvent` was emitted; every one is journaled."""

    ACTIVATED = "activated"              # condition became true: a new incident
    REACTIVATED = "reactivated"          # condition true again while its incident is open
    RETURNED = "returned_to_normal"      # condition ended (lifecycle: RTN unack/latched/normal)
    ACKNOWLEDGED = "acknowledged"
    REALARMED = "realarmed"              # still active after realarm_after: announced again
    RESET = "reset"                      # an operator reset a latched alarm
    SHELVED = "shelved"
    UNSHELVED = "unshelved"              # by an operator, or one-shot shelving at RTN
    SHELVE_EXPIRED = "shelve_expired"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    REMOVED_FROM_SERVICE = "removed_from_service"
    RETURNED_TO_SERVICE = "returned_to_service"
    COMMENT = "comment"
    CHATTERING = "chattering"            # >= N activations within the chatter window
    CHATTER_ENDED = "chatter_ended"
    CLOSED = "closed"                    # closed by the system (RTN unacknowledged too long, or
                                         # its rule is no longer configured)
    FLOOD_GROUPED = "flood_grouped"      # a lower-priority activation grouped during a flood
    FLOOD_RELEASED = "flood_released"    # still active when the flood ended: announced now
    FLOOD_STARTED = "flood_started"
    FLOOD_ENDED = "flood_ended"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm (a rule on a device).

    ``state`` is always the *condition* (ACTIVE: it holds, CLEARED: it has ended), whatever
    the transition; the lifecycle fields say what operators see and why this event exists.
    Events built by older code leave the lifecycle fields at their defaults.
    """

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
    #: ISA-18.2 state after this transition (None: built outside the lifecycle).
    lifecycle: LifecycleState | None = None
    #: What happened (None: built outside the lifecycle).
    transition: Transition | None = None
    #: One id per real-world event: repeated activations while it is open share it.
    incident_id: str = ""
    #: Activations of this alarm in its incident so far (1 for the first).
    occurrences: int = 1
    #: "system" or the operator's name.
    actor: str = "system"
    #: Why: the operator's reason or comment, or the system's explanation.
    reason: str = ""
    #: The alarm activated at least N times within the chatter window and still does.
    chattering: bool = False
    #: Id of the alarm flood during which it was grouped (or, on the flood's own events, the
    #: flood's id); None outside a flood.
    flood_group: str | None = None
    #: Whether consumers (work orders, upstream) received this event; False: journal only.
    announced: bool = False
    #: Position in the alarm journal (0 when not journaled).
    seq: int = 0
    #: A latching rule's alarm whose condition ended: it stays in alarm until an operator
    #: resets it (work orders are not cleared before that, see the RESET transition).
    latched: bool = False

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
