"""Reported repairs: grading a report by its category and shaping it into a work order.

A report is what an operator logs for a person's call, a patrol's finding or a walk-in. The
catalogue (``reports.categories``) grades it with a priority; an operator may override that
priority with a reason, which is recorded on the order (who, why, and what it was graded). The
desk then raises it like an alarm's order: the same windows, ladder, id / seq contract and outbox.

The reporter's contact is personal data. It is kept in full only on the edge's work-order
history (where an operator calls the reporter back); :func:`shareable` masks it in everything
that leaves that history (the upstream message, the console's live feed, log lines) unless
the site allows sharing (``reports.share_contact``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import GatewayConfig, Priority, mask_contact
from gateway.errors import GatewayError
from gateway.i18n import format_location
from gateway.workorders._model import (
    Bilingual,
    PriorityOverride,
    ReportDetails,
    WorkOrder,
    WorkOrderLocation,
)

__all__ = ["NewReport", "ReportRefused", "grade_report", "shareable"]


class ReportRefused(GatewayError):
    """A report that cannot be logged as given (unknown category or device, priority change
    without a reason); the message says what to change."""


@dataclass(frozen=True)
class NewReport:
    """A graded report, ready for :meth:`WorkOrderDesk.open_report`."""

    category: str
    priority: Priority
    title: Bilingual
    description: Bilingual
    location: WorkOrderLocation
    details: ReportDetails


def grade_report(config: GatewayConfig, *, category: str, description: str, channel: str,
                 logged_by: str, building: str | None = None, floor: str | None = None,
                 room: str | None = None, device: str | None = None,
                 reporter: str | None = None, contact: str | None = None,
                 priority: Priority | None = None,
                 priority_reason: str | None = None) -> NewReport:
    """Grade a report by its category and build what its work order says.

    A ``device`` (id) fills in the location from that device's config; building, floor and
    room given as well win over it. ``priority`` different from the category's needs a
    ``priority_reason``.

    Raises:
        ReportRefused: Unknown or disabled category, unknown device, a priority change
            without a reason.
    """
    entry = config.reports.category(category)
    if entry is None:
        known = ", ".join(sorted(config.reports.enabled()))
        raise ReportRefused(f"unknown report category {category!r}; the catalogue has: {known}")
    graded: Priority = entry.priority
    override: PriorityOverride | None = None
    final: Priority = graded
    if priority is not None and priority != graded:
        if not (priority_reason or "").strip():
            raise ReportRefused(f"changing the priority from {graded} (category {category}) "
                                f"to {priority} needs a reason")
        override = PriorityOverride(graded=graded, by=logged_by,
                                    reason=(priority_reason or "").strip())
        final = priority
    dev_name = ""
    parts: dict[str, str | None] = {"building": building, "floor": floor, "zone": None,
                                    "room": room}
    if device:
        dev = next((d for d in config.devices if d.id == device), None)
        if dev is None:
            raise ReportRefused(f"unknown device {device!r}")
        dev_name = dev.name or dev.id
        for key, value in dev.location.model_dump().items():
            parts[key] = parts.get(key) or value
    place = WorkOrderLocation(site=config.site.id, device=device or "",
                              device_name=dev_name, **{k: v or None for k, v in parts.items()})
    where_zh = format_location(place, "zh-CN", device=dev_name or None)
    where_en = format_location(place, "en", device=dev_name or None)
    text = description.strip()
    return NewReport(
        category=category, priority=final,
        title=Bilingual(zh=f"{entry.title.zh}：{where_zh}", en=f"{entry.title.en}: {where_en}"),
        description=Bilingual(zh=text, en=text), location=place,
        details=ReportDetails(channel=channel, reporter=(reporter or "").strip() or None,
                              contact=(contact or "").strip() or None, operator=logged_by,
                              priority_override=override))


def shareable(order: WorkOrder, share_contact: bool) -> WorkOrder:
    """The order as it may leave the work-order history: the contact masked unless shared."""
    report = order.report
    if share_contact or report is None or report.contact is None:
        return order
    return order.model_copy(update={"report": report.model_copy(
        update={"contact": mask_contact(report.contact)})})

