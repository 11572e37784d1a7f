"""Wire format of alarm events sent upstream (work orders: gateway.workorders.WorkOrder)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.alarms import AlarmEvent
from gateway.config import SiteConfig
from gateway.workorders import SCHEMA_VERSION, Bilingual, Timestamp, WorkOrderLocation

__all__ = ["AlarmMessage", "GatewayStatus", "alarm_message"]


class AlarmMessage(BaseModel):
    """One alarm transition as the platform receives it on ``<prefix>/<site>/alarms``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    type: Literal["alarm"] = "alarm"
    site_id: str
    gateway_id: str
    alarm_id: str
    rule_id: str
    state: Literal["active", "cleared"]
    category: str
    priority: str
    message: Bilingual
    location: WorkOrderLocation
    evidence: dict[str, bool | int | float | str | None]
    ts: Timestamp = Field(description="When the alarm changed state (RFC 3339).")
    # Added in schema 1 (optional, so earlier payloads stay valid): the ISA-18.2 view.
    transition: str | None = Field(
        default=None, description="what happened: activated, reactivated, realarmed, "
                                  "returned_to_normal, unshelved, ... (see docs/upstream.md)")
    lifecycle: str | None = Field(
        default=None, description="ISA-18.2 state after the transition, e.g. "
                                  "active_unacknowledged")
    incident_id: str | None = Field(
        default=None, description="one id per real-world event; repeated activations share it")
    occurrences: int | None = Field(default=None, ge=1,
                                    description="activations in this incident so far")
    chattering: bool | None = None


class GatewayStatus(BaseModel):
    """Retained on ``<prefix>/<site>/gateway/status``; ``offline`` is also the last will."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: Literal["online", "offline"]
    site_id: str
    gateway_id: str


def alarm_message(site: SiteConfig, event: AlarmEvent) -> AlarmMessage:
    """The upstream message for one alarm transition."""
    loc = event.location
    return AlarmMessage(
        site_id=site.id, gateway_id=site.gateway_id, alarm_id=event.alarm_id,
        rule_id=event.rule_id, state=event.state.value, category=event.category,
        priority=event.priority, message=Bilingual(zh=event.message_zh, en=event.message_en),
        location=WorkOrderLocation(site=site.id, building=loc.building, floor=loc.floor,
                                   zone=loc.zone, room=loc.room, device=event.device,
                                   device_name=event.device_name),
        evidence=event.evidence,
        ts=dt.datetime.fromtimestamp(event.ts, tz=dt.UTC).isoformat(timespec="milliseconds"),
        transition=event.transition.value if event.transition is not None else None,
        lifecycle=event.lifecycle.value if event.lifecycle is not None else None,
        incident_id=event.incident_id or None,
        occurrences=event.occurrences,
        chattering=event.chattering,
    )
