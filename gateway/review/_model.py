"""The review's and the summary's shapes: what the console API returns and the pages show."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.workorders import Bilingual

__all__ = ["Count", "FollowUpStats", "IncidentLine", "IncidentReview", "MonthlySummary",
           "NotYetAvailable", "ReportStats", "TimeStats", "TimelineEntry", "TimelineKind",
           "Verdict", "Window", "WindowStats", "WindowVerdict"]

Window = Literal["acknowledge", "on_site", "resolve"]
#: met: done by the deadline; breached: done after it; overdue: not done and the deadline has
#: passed; pending: not done, deadline ahead; none: the order has no such window, or was
#: rejected before it mattered.
Verdict = Literal["met", "breached", "overdue", "pending", "none"]
TimelineKind = Literal["detected", "alarm", "operator", "work_order", "escalation", "platform",
                       "on_site", "resolved", "window", "assigned", "console", "follow_up",
                       "reopened"]
EvidenceValue = bool | int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimelineEntry(_Model):
    """One moment of an incident."""

    ts: float = Field(description="Seconds since the epoch (for sorting).")
    at: str = Field(description="ISO 8601 in the site's time zone.")
    kind: TimelineKind
    what: Bilingual
    actor: str | None = Field(default=None, description="Operator, platform person or system.")
    detail: str | None = Field(default=None, description="Reason, comment or note as given.")
    source: Literal["journal", "work_order", "derived"] = Field(
        description="journal: the alarm journal; work_order: the work-order history; "
                    "derived: a deadline computed from them.")
    alarm_id: str | None = None
    evidence: dict[str, EvidenceValue] = Field(default_factory=dict)


class WindowVerdict(_Model):
    """How one response window went."""

    window: Window
    name: Bilingual
    due: str | None = Field(description="Deadline, ISO 8601 in the site's time zone.")
    done_at: str | None = Field(description="When it was reached, site time zone.")
    verdict: Verdict
    took_s: float | None = Field(description="Seconds from the alarm being raised to done.")
    margin_s: float | None = Field(description="Seconds to spare (met) or late (breached, "
                                               "overdue: so far).")


class IncidentReview(_Model):
    """The review (事后复盘) of one work order and the alarms behind it."""

    order_id: str
    alarm_id: str
    joined_alarms: list[str]
    site_id: str
    site_name: str
    timezone: str
    category: str
    category_title: Bilingual
    priority: str
    title: Bilingual
    description: Bilingual
    location: Bilingual
    device: str
    status: str
    detected_at: str
    raised_at: str
    closed_at: str | None
    evidence: dict[str, EvidenceValue] = Field(
        description="The readings that raised the alarm (and any that joined it).")
    windows: list[WindowVerdict]
    timeline: list[TimelineEntry]
    versions: int = Field(description="Work-order versions the history holds.")
    journal_events: int = Field(description="Alarm-journal events in the timeline.")
    generated_at: str


class Count(_Model):
    key: str
    name: Bilingual
    orders: int
    incidents: int = Field(description="Of which P0/P1.")


class WindowStats(_Model):
    window: Window
    name: Bilingual
    met: int
    breached: int
    overdue: int
    pending: int
    compliance: float | None = Field(description="met / (met + breached + overdue); null "
                                                 "when no order's window has ended.")


class TimeStats(_Model):
    measure: Window
    name: Bilingual
    count: int
    mean_s: float | None
    p90_s: float | None = Field(description="90th percentile, nearest rank.")


class IncidentLine(_Model):
    order_id: str
    priority: str
    title: Bilingual
    raised_at: str
    status: str
    breaches: list[Window]


class NotYetAvailable(_Model):
    available: bool = False
    note: Bilingual


class ReportStats(_Model):
    """Reported repairs (source report) raised in the month."""

    available: Literal[True] = True
    reports: int
    by_category: list[Count]
    by_building: list[Count]
    by_channel: list[Count]


class FollowUpStats(_Model):
    """Follow-up calls (回访) of the orders raised in the month."""

    available: Literal[True] = True
    calls: int = Field(description="Follow-ups recorded (each call, reached or not).")
    orders_followed_up: int = Field(description="Orders with at least one follow-up.")
    reached: int
    satisfied: int
    unsatisfied: int = Field(description="Reached and unsatisfied: each reopened its order.")
    not_reached: int
    waiting: int = Field(description="Orders resolved and still waiting for their follow-up.")
    overdue: int = Field(description="Of those, past follow_up_overdue_at.")
    satisfaction: float | None = Field(description="satisfied / reached; null when nobody "
                                                   "was reached.")


class MonthlySummary(_Model):
    """One calendar month (site time zone) of work orders."""

    month: str
    timezone: str
    site_name: str
    orders: int
    incidents: int = Field(description="P0 and P1 orders.")
    by_priority: list[Count]
    by_category: list[Count]
    by_building: list[Count]
    windows: list[WindowStats]
    times: list[TimeStats]
    incident_list: list[IncidentLine]
    reports: ReportStats
    follow_ups: FollowUpStats
    generated_at: str
