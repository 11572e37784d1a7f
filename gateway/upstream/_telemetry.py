"""Wire format of telemetry sent upstream: one message per device with the points due."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.workorders import SCHEMA_VERSION, Timestamp, WorkOrderLocation

__all__ = ["TelemetryMessage", "TelemetryPoint"]

class TelemetryPoint(BaseModel):
    """One point's reading, reported because it changed, its quality changed, or as the
    heartbeat."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: str
    value: bool | int | float | str | None = Field(
        description="The decoded, scaled value; null unless quality is good. A float that is "
                    "not finite is sent as text: \"nan\", \"inf\", \"-inf\".")
    quality: Literal["good", "comm-loss", "bad"]
    unit: str | None = Field(default=None, description="Engineering unit from the config.")
    reason: Literal["first", "change", "quality", "heartbeat"] = Field(
        description="Why it is in this message: first report since the gateway started, a "
                    "change beyond the deadband, a change of quality, or the heartbeat.")
    received_at: Timestamp = Field(description="When the gateway got the reading (its wall clock).")
    source_at: Timestamp | None = Field(default=None,
                                        description="The device's own timestamp, if it sent one.")
    error: str | None = Field(default=None,
                              description="Why the quality is not good, for people.")


class TelemetryMessage(BaseModel):
    """Points of one device on ``<prefix>/<site>/telemetry/<device>`` (or POSTed to
    ``upstream.http.telemetry_url``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    type: Literal["telemetry"] = "telemetry"
    id: str = Field(description="Unique per message; the same on a re-send (de-duplicate on "
                                "it). Also the HTTP Idempotency-Key.")
    site_id: str
    gateway_id: str
    device: str
    kind: str = Field(description="The device's kind, e.g. energy_meter.")
    location: WorkOrderLocation
    sent_at: Timestamp = Field(description="When the gateway put the message together.")
    points: list[TelemetryPoint] = Field(min_length=1)
