"""The work order: what the platform upstream receives for an incident.

This pydantic model is the wire contract (``schema_version``); change it only compatibly, and
bump the version when a consumer would have to change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SCHEMA_VERSION", "Bilingual", "WorkOrder", "WorkOrderLocation"]

SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bilingual(_Frozen):
    zh: str
    en: str


class WorkOrderLocation(_Frozen):
    site: str
    building: str | None = None
    floor: str | None = None
    zone: str | None = None
    room: str | None = None
    device: str
    device_name: str


class WorkOrder(_Frozen):
    """One work order per incident; later updates reuse ``id`` with a higher ``seq``."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["work_order"] = "work_order"
    id: str = Field(description="Stable id: the platform de-duplicates on it.")
    seq: int = Field(ge=1, description="Update number for this id; the platform keeps the "
                                       "highest.")
    site_id: str
    gateway_id: str
    alarm_id: str
    rule_id: str
    category: str
    priority: Literal["P0", "P1", "P2", "P3"]
    status: Literal["open", "alarm_cleared"]
    title: Bilingual
    description: Bilingual
    location: WorkOrderLocation
    evidence: dict[str, bool | int | float | str | None]
    detected_at: str = Field(description="ISO 8601: the condition first became true.")
    raised_at: str = Field(description="ISO 8601: the alarm was confirmed (after its delay).")
    respond_by: str = Field(description="ISO 8601: raised_at + the response window.")
    updated_at: str
