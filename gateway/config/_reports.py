"""Reported repairs (报事报修): the catalogue a report's category comes from, and what of the
reporter's personal data may leave the gateway.

A report category grades the report: its priority picks the same response windows and
escalation ladder as an alarm work order of that priority (``work_orders.priorities``, and
``work_orders.categories.<id>`` when the site overrides that category's windows).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config._northbound import Priority
from gateway.config._rules import Message
from gateway.config._types import StrictModel as _Model
from gateway.i18n import CATEGORY_TITLES

__all__ = ["DEFAULT_REPORT_CATEGORIES", "REPORT_CHANNELS", "ReportCategory", "ReportChannel",
           "ReportsConfig", "mask_contact"]

#: How a report reached the control room.
ReportChannel = Literal["phone", "patrol", "walk_in", "app", "email", "other"]
REPORT_CHANNELS: tuple[ReportChannel, ...] = ("phone", "patrol", "walk_in", "app", "email",
                                              "other")


class ReportCategory(_Model):
    """One entry of the report catalogue: what people call it and how urgent it is."""

    title: Message = Field(description="Shown to operators and sent as the work-order title.")
    priority: Priority = Field(description="Grades the report: the windows and ladder of "
                                           "this priority apply, as for alarms.")
    enabled: bool = Field(default=True, description="False: hide a built-in category.")


def _entry(category: str, priority: str) -> dict[str, Any]:
    title = CATEGORY_TITLES[category]
    return {"title": {"zh": title.zh, "en": title.en}, "priority": priority}


#: The built-in catalogue; a site overrides or adds entries under ``reports.categories``.
DEFAULT_REPORT_CATEGORIES: dict[str, dict[str, Any]] = {
    "elevator_entrapment": _entry("elevator_entrapment", "P0"),
    "water_leak": _entry("water_leak", "P1"),
    "power_loss": _entry("power_loss", "P1"),
    "elevator_fault": _entry("elevator_fault", "P1"),
    "access_fault": _entry("access_fault", "P2"),
    "facility_damage": _entry("facility_damage", "P3"),
    "noise": _entry("noise", "P3"),
    "other_repair": _entry("other_repair", "P3"),
}


class ReportsConfig(_Model):
    """Reports logged by operators (phone calls, patrol findings, walk-ins)."""

    categories: dict[str, ReportCategory] = Field(
        default_factory=dict,
        description="The report catalogue, merged over the built-in one (漏水, 停电, 电梯故障, "
                    "门禁故障, 噪音, 公共设施损坏, ...).")
    share_contact: bool = Field(
        default=False,
        description="True: the reporter's contact goes upstream and into log lines as given. "
                    "Default: masked (138****5678); the full contact stays in the edge's "
                    "work-order history.")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("categories")
        if given is not None and not isinstance(given, dict):
            return data  # pydantic reports the type error
        merged: dict[Any, Any] = {k: dict(v) for k, v in DEFAULT_REPORT_CATEGORIES.items()}
        for key, value in (given or {}).items():
            base = merged.get(str(key))
            merged[key] = {**base, **value} if isinstance(value, dict) and base else value
        return {**data, "categories": merged}

    @field_validator("categories", mode="before")
    @classmethod
    def _category_names(cls, value: Any) -> Any:
        for name in value if isinstance(value, dict) else ():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
                raise ValueError(f"category {name!r}: use lower-case letters, digits and '_'")
        return value

    def category(self, name: str) -> ReportCategory | None:
        """The enabled catalogue entry ``name``, if any."""
        entry = self.categories.get(name)
        return entry if entry is not None and entry.enabled else None

    def enabled(self) -> dict[str, ReportCategory]:
        return {k: v for k, v in self.categories.items() if v.enabled}


def mask_contact(contact: str) -> str:
    """A contact with its middle hidden: ``13812345678`` → ``138****5678``.

    Keeps the first three and last four characters of a long value (a mobile number's carrier
    prefix and the digits people read back), fewer of a short one, and hides the rest.
    """
    text = contact.strip()
    if len(text) >= 11:
        return f"{text[:3]}****{text[-4:]}"
    if len(text) >= 5:
        return f"{text[:1]}****{text[-2:]}"
    return "****"
