"""The work order: what the platform upstream receives for an incident, and what it answers.

These pydantic models are the wire contract (``schema_version``, ``docs/upstream.md``,
``docs/upstream.schema.json``). Change them only compatibly: add optional fields with defaults
and new enumeration values, never rename, remove or retype. A change a consumer would have to
follow bumps ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

__all__ = ["CLOSED_STATUSES", "PLATFORM_STATUSES", "SCHEMA_VERSION", "Assignment", "Bilingual",
           "Escalation", "FollowUp", "PriorityOverride", "ReportDetails",
           "SlaBreach", "StatusAnswer", "Timestamp", "WorkOrder", "WorkOrderEvent",
           "WorkOrderLocation", "WorkOrderStatus"]

SCHEMA_VERSION = 1

#: Seconds a status answer's ``at`` may lie ahead of the gateway's clock, or before its work
#: order was raised, and still be taken (clamped) as clock skew between the two systems.
STATUS_SKEW = 300.0

WorkOrderStatus = Literal["open", "alarm_cleared", "acknowledged", "on_site", "resolved",
                          "rejected"]
WorkOrderEvent = Literal["raised", "escalated", "unacknowledged", "pre_alert", "alarm_cleared",
                         "acknowledged", "on_site", "resolved", "rejected", "follow_up_due",
                         "alarm_joined", "alarm_latched", "alarm_reactivated", "assigned",
                         "followed_up", "reopened"]
PlatformStatus = Literal["acknowledged", "on_site", "resolved", "rejected"]

#: States the platform reports back, in the order a work order moves through them.
PLATFORM_STATUSES: tuple[PlatformStatus, ...] = ("acknowledged", "on_site", "resolved",
                                                 "rejected")
#: States after which nobody is escalated to any more.
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "rejected"})


def _rfc3339(value: str) -> str:
    """The gateway writes every moment as an RFC 3339 date-time with its UTC offset."""
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"expected an RFC 3339 date-time with UTC offset such as "
                         f"2026-01-01T08:00:00.000+00:00, got {value!r}")
    try:
        dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not a valid date and time: {value!r} ({exc})") from None
    return value


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

#: A moment the gateway sends: an RFC 3339 date-time with its UTC offset, published in the
#: JSON Schema as ``format: date-time`` so a consumer's validator can check it.
Timestamp = Annotated[str, AfterValidator(_rfc3339),
                      WithJsonSchema({"type": "string", "format": "date-time"})]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bilingual(_Frozen):
    """Text for people, in Chinese and English."""

    zh: str
    en: str


class WorkOrderLocation(_Frozen):
    """Where the incident is; ``site`` and ``device`` are ids."""

    site: str
    building: str | None = None
    floor: str | None = None
    zone: str | None = None
    room: str | None = None
    device: str
    device_name: str


class Escalation(_Frozen):
    """Where the order stands on its category's escalation ladder."""

    level: int = Field(ge=1, description="1 = first step of the ladder.")
    levels: int = Field(ge=1, description="Number of steps in the ladder.")
    role: str = Field(description="Role id, e.g. control_room, patrol, engineering, "
                                  "supervisor.")
    name: Bilingual = Field(description="Role shown to people, e.g. 中控室 / Control room.")
    deadline: Timestamp = Field(description="ISO 8601: unless acknowledged by then, the order goes "
                                      "to the next level (or, at the top, is re-sent as "
                                      "'unacknowledged').")
    escalated_at: Timestamp | None = Field(default=None, description="ISO 8601: when this level "
                                                               "was reached (null at level 1).")


class SlaBreach(_Frozen):
    """A response window that was missed, and by how much."""

    window: Literal["acknowledge", "on_site", "resolve"]
    due: Timestamp = Field(description="ISO 8601 deadline of the window.")
    at: Timestamp = Field(description="ISO 8601: when the platform reported the state.")
    late_by_s: float = Field(ge=0, description="Seconds after the deadline.")


class PriorityOverride(_Frozen):
    """An operator changed the priority the report's category graded it with."""

    graded: Literal["P0", "P1", "P2", "P3"] = Field(
        description="The priority the category gave.")
    by: str = Field(max_length=200, description="The operator who changed it.")
    reason: str = Field(max_length=2000)


class ReportDetails(_Frozen):
    """What an operator logged about a reported repair (``source: report``)."""

    channel: str = Field(description="How it reached the control room: phone, patrol, "
                                     "walk_in, app, email, other.")
    reporter: str | None = Field(default=None, max_length=200,
                                 description="Who reported it (a name, or a patrol's post).")
    contact: str | None = Field(
        default=None, max_length=200,
        description="How to reach the reporter. Personal data: masked (138****5678) unless "
                    "the site allows sharing it (reports.share_contact).")
    operator: str = Field(max_length=200, description="The operator who logged the report.")
    priority_override: PriorityOverride | None = None


class Assignment(_Frozen):
    """Who an operator at the edge dispatched the order to (派单): a ladder role, a named
    person, or both."""

    role: str | None = Field(default=None, max_length=64,
                             description="A role id, e.g. control_room, patrol, engineering, "
                                         "supervisor, or one the site names.")
    person: str | None = Field(default=None, max_length=200,
                               description="A named person (free text).")
    note: str | None = Field(default=None, max_length=2000)
    by: str = Field(max_length=200, description="The operator who assigned it.")
    at: Timestamp

    @model_validator(mode="after")
    def _someone(self) -> Assignment:
        if not (self.role or self.person):
            raise ValueError("an assignment names a role, a person or both")
        return self


class FollowUp(_Frozen):
    """One follow-up call (回访) after the order was resolved."""

    at: Timestamp
    by: str = Field(max_length=200, description="The operator who made the call.")
    reached: bool = Field(description="Whether the reporter (or resident) was reached.")
    satisfied: bool | None = Field(
        default=None, description="Set when reached: satisfied closes the order, unsatisfied "
                                  "reopens it.")
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _answered(self) -> FollowUp:
        if self.reached and self.satisfied is None:
            raise ValueError("a follow-up that reached someone says whether they were "
                             "satisfied")
        if not self.reached and self.satisfied is not None:
            raise ValueError("a follow-up that reached nobody cannot say satisfied")
        return self


class WorkOrder(_Frozen):
    """One work order per incident; later updates reuse ``id`` with a higher ``seq``."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["work_order"] = "work_order"
    id: str = Field(description="Stable id: the platform de-duplicates on it.")
    seq: int = Field(ge=1, description="Update number for this id; the platform keeps the "
                                       "highest.")
    site_id: str
    gateway_id: str
    source: Literal["alarm", "report"] = Field(
        default="alarm",
        description="alarm: raised by an alarm; report: a repair reported by a person and "
                    "logged by an operator (alarm_id is then report:<id>, rule_id is "
                    "'report', evidence is empty, report holds the details).")
    alarm_id: str
    rule_id: str
    category: str
    priority: Literal["P0", "P1", "P2", "P3"]
    status: WorkOrderStatus = Field(
        description="open → acknowledged → on_site → resolved, or rejected; alarm_cleared: "
                    "the alarm returned to normal before anyone acknowledged.")
    event: WorkOrderEvent = Field(default="raised",
                                  description="What this update is about.")
    alarm_active: bool = Field(default=True,
                               description="False once the alarm has returned to normal (for "
                                           "a latching alarm: once an operator reset it).")
    alarm_latched: bool = Field(
        default=False,
        description="True while the order's alarm is latched: its condition has ended but a "
                    "latching rule holds it until an operator resets it (alarm_active stays "
                    "true). Set by the alarm_latched update, false again on alarm_reactivated, "
                    "alarm_joined by an active alarm, or the alarm_cleared of the reset.")
    title: Bilingual
    description: Bilingual
    location: WorkOrderLocation
    evidence: dict[str, bool | int | float | str | None]
    detected_at: Timestamp = Field(description="ISO 8601: the condition first became true.")
    raised_at: Timestamp = Field(description="ISO 8601: the alarm was confirmed (after its delay).")
    respond_by: Timestamp = Field(description="ISO 8601: raised_at + the on-site window.")
    acknowledge_by: Timestamp | None = Field(
        default=None, description="ISO 8601: end of the ladder's first step.")
    resolve_by: Timestamp | None = Field(default=None,
                                   description="ISO 8601: raised_at + the resolution window.")
    follow_up_by: Timestamp | None = Field(default=None,
                                     description="ISO 8601: follow-up (回访) due; set once "
                                                 "resolved.")
    escalation: Escalation | None = None
    acknowledged_at: Timestamp | None = None
    on_site_at: Timestamp | None = None
    resolved_at: Timestamp | None = None
    rejected_at: Timestamp | None = None
    status_by: str | None = Field(default=None,
                                  description="Who changed the status: the person the platform "
                                              "names, or the operator at the edge.")
    status_note: str | None = None
    status_via: Literal["platform", "console"] | None = Field(
        default=None,
        description="Who recorded the last status (acknowledged, on_site, resolved, "
                    "rejected): the platform's answer, or an operator at the edge "
                    "(status_by is then the operator's user name).")
    assigned_to: Assignment | None = Field(
        default=None, description="Set when an operator at the edge dispatched the order "
                                  "(event assigned); the ladder goes on regardless.")
    follow_ups: list[FollowUp] = Field(
        default_factory=list,
        description="Follow-up calls (回访) recorded at the edge, oldest first; kept when the "
                    "order is reopened.")
    follow_up_overdue_at: Timestamp | None = Field(
        default=None, description="ISO 8601: follow_up_by + follow_up_within; a follow-up "
                                  "not recorded by then is overdue.")
    reopened_count: int = Field(default=0, ge=0,
                                description="Times an unsatisfied follow-up reopened it.")
    reopened_at: Timestamp | None = Field(
        default=None, description="ISO 8601: the last reopening; the windows and the ladder "
                                  "count from here.")
    breaches: list[SlaBreach] = Field(default_factory=list,
                                      description="Missed response windows.")
    joined_alarms: list[str] = Field(
        default_factory=list,
        description="Other alarms of the same device and category that joined this order "
                    "while it was open (e.g. the alarm button during an entrapment): one "
                    "real-world incident, one work order.")
    alarm_reset_by: str | None = Field(
        default=None, max_length=200,
        description="Set on the alarm_cleared update of a latching alarm (e.g. unintended car "
                    "movement): the operator who reset it. Such an alarm does not clear when "
                    "its condition ends; a person has to reset it.")
    alarm_reset_note: str | None = Field(default=None, max_length=2000,
                                         description="The operator's reason for the reset.")
    report: ReportDetails | None = Field(
        default=None, description="Set when source is report.")
    related_to: str | None = Field(
        default=None, description="Id of an earlier, still open work order of the same alarm "
                                  "(e.g. one raised before the gateway restarted).")
    updated_at: Timestamp


class StatusAnswer(_Frozen):
    """The platform's answer about one work order (MQTT ``.../work-orders/<id>/status`` or
    ``POST /api/v1/work-orders/<id>/status``)."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["work_order_status"] = "work_order_status"
    id: str | None = Field(default=None,
                           description="Work-order id; optional, the topic or URL names it.")
    status: PlatformStatus
    at: Annotated[str, WithJsonSchema({"type": "string", "format": "date-time",
                                       "maxLength": 64})] | None = Field(
        default=None, max_length=64,
        description="ISO 8601 date and time of the change, with its UTC offset (e.g. "
                    "2026-01-01T16:07:01+08:00 or ...Z); without one it is read as UTC. "
                    "Default: when the gateway receives the answer. Refused when more than "
                    "300 s ahead of the gateway's clock or before the order was raised.")
    by: str | None = Field(default=None, max_length=200, description="Person or team.")
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("at")
    @classmethod
    def _iso_date_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_instant(value)
        return value


def answer_time(text: str, *, now: float, raised: float) -> float:
    """When a status answer says its change happened, clamped into ``[raised, now]``.

    Args:
        text: The answer's ``at``.
        now: The gateway's clock.
        raised: When the work order was raised.

    Raises:
        ValueError: ``at`` lies more than ``STATUS_SKEW`` seconds ahead of ``now`` or before
            ``raised``: no clock skew explains it.
    """
    at = parse_instant(text)
    if at > now + STATUS_SKEW:
        raise ValueError(f"'at' {text} is {at - now:.0f} s ahead of the gateway's clock "
                         f"({_iso(now)}); at most {STATUS_SKEW:.0f} s of skew is accepted")
    if at < raised - STATUS_SKEW:
        raise ValueError(f"'at' {text} is {raised - at:.0f} s before the work order was "
                         f"raised ({_iso(raised)}); at most {STATUS_SKEW:.0f} s of skew is "
                         f"accepted")
    return min(max(at, raised), now)


def parse_instant(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 date and time; UTC when it has no offset.

    Raises:
        ValueError: ``text`` is not a date and time this contract accepts.
    """
    if not _DATE_TIME.match(text):
        raise ValueError(f"expected an ISO 8601 date and time such as "
                         f"2026-01-01T16:07:01+08:00, got {text!r}")
    try:
        moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid ISO 8601 date and time: {text!r} ({exc})") from None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


#: A date with a time of day: a bare date (midnight of which day, where?) is not enough.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
