"""The console API's JSON shapes (pydantic), from which its OpenAPI document is generated.

Times are ISO 8601 in UTC with milliseconds (``2026-12-05T14:02:00.123+00:00``); the page shows
them in the site's time zone (``GET /api/v1/site``). Text for people comes in both languages
(``{"zh": ..., "en": ...}``) so that each browser shows its own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.alarms import AlarmEvent, AlarmRecord
from gateway.config import Location
from gateway.i18n import format_location
from gateway.workorders import WorkOrder

__all__ = [
    "AckBody",
    "ActionError",
    "AlarmList",
    "AlarmView",
    "AssignBody",
    "CommentBody",
    "DeviceList",
    "DeviceView",
    "ErrorBody",
    "FollowUpBody",
    "FollowUpItem",
    "FollowUpList",
    "HealthView",
    "HistoryEvent",
    "HistoryPage",
    "Hold",
    "LoginBody",
    "NoteBody",
    "OrderLink",
    "PointView",
    "ReasonBody",
    "ReportBody",
    "ReportCatalogue",
    "ReportCategoryView",
    "SessionView",
    "ShelfView",
    "ShelveBody",
    "SiteView",
    "Text",
    "UserBody",
    "UserPatch",
    "UserView",
    "WorkOrderList",
    "iso",
    "location_text",
    "order_json",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def iso(ts: float | None) -> str | None:
    """Epoch seconds as the API's time format."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


class Text(_Out):
    zh: str
    en: str


def location_text(location: object) -> Text:
    """A location as people read it, in both languages (``1号楼 3层 东区`` / ``Bldg 1,
    floor 3, zone East``): the gateway's one style, so that the page need not redo it."""
    return Text(zh=format_location(location, "zh-CN"), en=format_location(location, "en"))


def order_json(order: WorkOrder) -> dict[str, Any]:
    """A work order as the console sends it: the upstream contract's shape, plus
    ``location_text``."""
    body: dict[str, Any] = order.model_dump(mode="json")
    body["location_text"] = location_text(order.location).model_dump()
    return body


class ErrorBody(_Out):
    """Every error answer."""

    error: str = Field(description="What went wrong, in English, for logs and scripts.")
    details: Any = None


class ActionError(ErrorBody):
    """An operator action the alarm lifecycle refused (HTTP 409)."""

    action: str
    alarm_id: str


class ShelfView(_Out):
    actor: str
    reason: str
    since: str | None
    until: str | None
    one_shot: bool


class Hold(_Out):
    actor: str
    reason: str
    since: str | None


class OrderLink(_Out):
    """The work order an alarm raised, as far as the escalation goes."""

    id: str
    seq: int
    status: str
    respond_by: str
    acknowledge_by: str | None
    escalation_level: int | None
    escalation_levels: int | None
    escalation_role: str | None
    escalation_name: Text | None
    escalation_deadline: str | None
    #: The alarm's condition has ended, but a latching rule holds it until an operator reset.
    latched: bool = False


class AlarmView(_Out):
    """One alarm as the board shows it."""

    alarm_id: str
    rule_id: str
    device: str
    device_name: str
    category: str
    category_title: Text
    priority: Literal["P0", "P1", "P2", "P3"]
    location: dict[str, str | None]
    location_text: Text = Field(description="The location as people read it.")
    message: Text
    state: str = Field(description="ISA-18.2 state: active_unacknowledged, "
                                   "active_acknowledged, returned_unacknowledged, latched, "
                                   "normal, shelved, suppressed, out_of_service.")
    base_state: str = Field(description="The state ignoring shelving, suppression and "
                                        "out of service.")
    active: bool = Field(description="The condition holds now.")
    acknowledged: bool
    latched: bool
    shelved: ShelfView | None
    suppressed_by: str | None
    out_of_service: Hold | None
    chattering: bool
    flood_group: str | None
    activated_at: str | None
    condition_since: str | None
    occurrences: int
    incident_id: str
    evidence: dict[str, bool | int | float | str | None]
    work_order: OrderLink | None

    @classmethod
    def build(cls, rec: AlarmRecord, *, title: Text, order: WorkOrder | None) -> AlarmView:
        return cls(
            alarm_id=rec.alarm_id, rule_id=rec.rule_id, device=rec.device,
            device_name=rec.device_name, category=rec.category, category_title=title,
            priority=rec.priority,
            location=_location(rec.location), location_text=location_text(rec.location),
            message=Text(zh=rec.message_zh, en=rec.message_en),
            state=rec.lifecycle.value, base_state=rec.base_state.value, active=rec.condition,
            acknowledged=rec.acked, latched=rec.latched,
            shelved=None if rec.shelf is None else ShelfView(
                actor=rec.shelf.actor, reason=rec.shelf.reason, since=iso(rec.shelf.since),
                until=iso(rec.shelf.until), one_shot=rec.shelf.one_shot),
            suppressed_by=rec.suppressed_by,
            out_of_service=None if rec.out_of_service is None else Hold(
                actor=rec.out_of_service.actor, reason=rec.out_of_service.reason,
                since=iso(rec.out_of_service.since)),
            chattering=rec.chattering, flood_group=rec.flood_group,
            activated_at=iso(rec.activated_at or None),
            condition_since=iso(rec.condition_since or None), occurrences=rec.occurrences,
            incident_id=rec.incident_id, evidence=dict(rec.evidence),
            work_order=None if order is None else _link(order))


class AlarmList(_Out):
    alarms: list[AlarmView]
    flood: dict[str, Any] | None = Field(description="The alarm flood under way, or null.")


class AckBody(_In):
    comment: str = Field(default="", max_length=2000)


class ReasonBody(_In):
    reason: str = Field(default="", max_length=2000)


class CommentBody(_In):
    text: str = Field(min_length=1, max_length=2000)


class ShelveBody(_In):
    reason: str = Field(min_length=1, max_length=2000)
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86400.0,
                                     description="Seconds; default alarms.shelve_max.")
    one_shot: bool = Field(default=False,
                           description="Unshelve at the next return to normal.")


class ReportBody(_In):
    """A reported repair, as the operator logs it."""

    category: str = Field(min_length=1, max_length=64,
                          description="A category of the report catalogue "
                                      "(GET /api/v1/report-categories).")
    description: str = Field(min_length=1, max_length=2000)
    channel: Literal["phone", "patrol", "walk_in", "app", "email", "other"] = Field(
        default="phone", description="How the report reached the control room.")
    building: str | None = Field(default=None, max_length=100)
    floor: str | None = Field(default=None, max_length=100)
    room: str | None = Field(default=None, max_length=100)
    device: str | None = Field(default=None, max_length=100,
                               description="A device id; its location fills in what is not "
                                           "given.")
    reporter: str | None = Field(default=None, max_length=200)
    contact: str | None = Field(
        default=None, max_length=200,
        description="Phone or other contact. Personal data: kept in the gateway's "
                    "work-order history, masked upstream and in logs unless the site allows "
                    "sharing it.")
    priority: Literal["P0", "P1", "P2", "P3"] | None = Field(
        default=None, description="Overrides the category's priority; needs priority_reason.")
    priority_reason: str | None = Field(default=None, max_length=2000)


class AssignBody(_In):
    """Dispatch a work order (派单) to a role, a named person, or both."""

    role: str | None = Field(default=None, min_length=1, max_length=64,
                             description="A role id, e.g. control_room, patrol, engineering, "
                                         "supervisor.")
    person: str | None = Field(default=None, min_length=1, max_length=200,
                               description="A named person.")
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _someone(self) -> AssignBody:
        if not (self.role or self.person):
            raise ValueError("give a role, a person or both")
        return self


class NoteBody(_In):
    """An operator records a work order's progress (acknowledged, on site, resolved)."""

    note: str | None = Field(default=None, max_length=2000)


class FollowUpBody(_In):
    """A follow-up call (回访): reached or not; when reached, satisfied or not."""

    reached: bool
    satisfied: bool | None = Field(
        default=None, description="Required when reached; must be absent or null when not.")
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _answered(self) -> FollowUpBody:
        if self.reached and self.satisfied is None:
            raise ValueError("reached: say whether they were satisfied (satisfied: true or "
                             "false)")
        if not self.reached and self.satisfied is not None:
            raise ValueError("not reached: satisfied must be null")
        return self


class FollowUpItem(_Out):
    """A resolved order waiting for its follow-up."""

    order: dict[str, Any] = Field(description="The work order, latest version.")
    due_at: str = Field(description="follow_up_by.")
    overdue_at: str = Field(description="follow_up_overdue_at (follow_up_by + "
                                        "follow_up_within).")
    overdue: bool
    attempts: int = Field(description="Follow-ups recorded since it was resolved that "
                                      "reached nobody.")


class FollowUpList(_Out):
    due: list[FollowUpItem] = Field(description="Due now: overdue first, then oldest due "
                                                "first.")
    upcoming: list[FollowUpItem] = Field(description="Resolved, due later; soonest first.")
    overdue: int = Field(description="How many of the due ones are overdue.")
    now: str


class ReportCategoryView(_Out):
    id: str
    title: Text
    priority: Literal["P0", "P1", "P2", "P3"]


class ReportCatalogue(_Out):
    categories: list[ReportCategoryView]
    channels: list[str]


class WorkOrderList(_Out):
    orders: list[dict[str, Any]] = Field(description="Work orders, latest version of each "
                                                     "(the upstream contract's shape, plus "
                                                     "location_text).")


class PointView(_Out):
    name: str
    value: bool | int | float | str | None
    quality: str | None
    ts: str | None
    unit: str | None = None


class DeviceView(_Out):
    id: str
    name: str
    kind: str | None
    driver: str
    link: str | None
    link_state: str | None
    state: str | None = Field(description="ok, comm-loss, bad, backoff, link-down, waiting.")
    location: dict[str, str | None]
    location_text: Text = Field(description="The location as people read it.")
    points: list[PointView]
    counters: dict[str, int] = Field(description="The device's link's counters: requests, "
                                                 "timeouts, messages, reconnects...")
    readings: int = Field(default=0, description="Readings received since the gateway started.")
    last_reading: str | None = None


class DeviceList(_Out):
    devices: list[DeviceView]


class HistoryEvent(_Out):
    seq: int
    ts: str | None
    alarm_id: str
    device: str
    device_name: str
    category: str
    priority: str
    transition: str
    state: str
    lifecycle: str
    actor: str
    reason: str
    message: Text
    location: dict[str, str | None]
    location_text: Text
    incident_id: str

    @classmethod
    def build(cls, e: AlarmEvent) -> HistoryEvent:
        return cls(seq=e.seq, ts=iso(e.ts), alarm_id=e.alarm_id, device=e.device,
                   device_name=e.device_name, category=e.category, priority=e.priority,
                   transition=e.transition.value if e.transition else "",
                   state=e.state.value, lifecycle=e.lifecycle.value if e.lifecycle else "",
                   actor=e.actor, reason=e.reason, message=Text(zh=e.message_zh,
                                                               en=e.message_en),
                   location=_location(e.location), location_text=location_text(e.location),
                   incident_id=e.incident_id)


class HistoryPage(_Out):
    events: list[HistoryEvent]
    more: bool = Field(description="More events match; ask again with before_seq.")


class SiteView(_Out):
    id: str
    name: str
    gateway_id: str
    timezone: str
    version: str
    users_configured: bool = Field(description="False until someone ran `propgw users add`.")
    logged_in: bool = Field(default=False,
                            description="This request came with a live session cookie: "
                                        "GET /api/v1/session gives its user and CSRF token.")
    categories: dict[str, Text] = Field(
        default_factory=dict,
        description="Every alarm category this site's rules can raise, with its title in both "
                    "languages (for filters and lists that carry only the category id).")


class LoginBody(_In):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionView(_Out):
    name: str
    role: str
    csrf_token: str = Field(description="Send as X-CSRF-Token with every request that "
                                        "changes something.")


class UserView(_Out):
    name: str
    role: str


class UserBody(_In):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "operator", "engineer", "admin"]
    password: str = Field(min_length=8, max_length=1024)


class UserPatch(_In):
    role: Literal["viewer", "operator", "engineer", "admin"] | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class HealthView(_Out):
    status: Literal["ok", "degraded", "failing"]
    ok: bool
    reasons: list[dict[str, Any]]


def _location(loc: Location) -> dict[str, str | None]:
    return {"building": loc.building, "floor": loc.floor, "zone": loc.zone, "room": loc.room}


def _link(order: WorkOrder) -> OrderLink:
    esc = order.escalation
    return OrderLink(
        id=order.id, seq=order.seq, status=order.status, respond_by=order.respond_by,
        acknowledge_by=order.acknowledge_by,
        escalation_level=esc.level if esc else None, escalation_levels=esc.levels if esc else None,
        escalation_role=esc.role if esc else None,
        escalation_name=Text(zh=esc.name.zh, en=esc.name.en) if esc else None,
        escalation_deadline=esc.deadline if esc else None, latched=order.alarm_latched)
