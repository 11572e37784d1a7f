"""Telemetry upstream: which points are reported, and how often (report by exception).

::

    telemetry:
      defaults: {deadband_percent: 0.5, min_interval: 10s, max_interval: 15m}
      exclude: [{points: ["*_raw"]}]
      overrides:
        - {kinds: [energy_meter, water_meter], deadband_percent: 0}
        - {devices: [E1], points: [load], deadband: 5, min_interval: 30s}
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config._types import Duration
from gateway.config._types import StrictModel as _Model

__all__ = ["PointSelector", "ReportPolicy", "TelemetryConfig", "TelemetryOverride"]


class PointSelector(_Model):
    """Points picked by device id, device kind and point name; every given key must match.

    Patterns are shell-style (``*``, ``?``, ``[ab]``); a device pattern is matched against the
    id a reading carries, and a templated id (``door-{door}``) matches every id it expands to.
    """

    devices: list[str] | None = Field(
        default=None, min_length=1, description="Device id patterns, e.g. [E1, 'meter-*'].")
    kinds: list[str] | None = Field(
        default=None, min_length=1, description="Device kinds, e.g. [energy_meter].")
    points: list[str] | None = Field(
        default=None, min_length=1, description="Point name patterns, e.g. ['*_kwh', load].")

    @model_validator(mode="after")
    def _patterns(self) -> PointSelector:
        for key in ("devices", "kinds", "points"):
            for pattern in getattr(self, key) or []:
                if not pattern or len(pattern) > 128 or any(c in pattern for c in " /#+"):
                    raise ValueError(f"{key}: {pattern!r} is not a valid pattern (no spaces, "
                                     f"'/', '#' or '+')")
        return self


class ReportPolicy(_Model):
    """When a point is reported: it moved more than its deadband, no sooner than
    ``min_interval`` after its last report, and at least every ``max_interval``."""

    deadband: float = Field(
        default=0.0, ge=0,
        description="Numeric points: a change must exceed this (in the point's unit).")
    deadband_percent: float = Field(
        default=0.5, ge=0, le=100,
        description="Numeric points: a change must exceed this percentage of the last "
                    "reported value. With deadband, the larger of the two applies.")
    min_interval: Duration = Field(
        default=10.0, le=86400,
        description="No two reports of one point closer than this (quality changes too).")
    max_interval: Duration = Field(
        default=900.0, gt=0, le=7 * 86400,
        description="Heartbeat: a point is reported at least this often, changed or not.")

    @model_validator(mode="after")
    def _intervals(self) -> ReportPolicy:
        if self.min_interval > self.max_interval:
            raise ValueError(f"min_interval ({self.min_interval:g}s) must not be longer than "
                             f"max_interval ({self.max_interval:g}s)")
        return self


class TelemetryOverride(PointSelector):
    """A different report policy for the points it selects; keys left out keep the value of
    ``defaults`` (or of an earlier matching override)."""

    deadband: float | None = Field(default=None, ge=0)
    deadband_percent: float | None = Field(default=None, ge=0, le=100)
    min_interval: Duration | None = Field(default=None, le=86400)
    max_interval: Duration | None = Field(default=None, gt=0, le=7 * 86400)

    def policy_fields(self) -> dict[str, float]:
        """The policy keys this override sets."""
        keys = ("deadband", "deadband_percent", "min_interval", "max_interval")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    @model_validator(mode="after")
    def _sets_something(self) -> TelemetryOverride:
        if not self.policy_fields():
            raise ValueError("an override must set at least one of deadband, deadband_percent, "
                             "min_interval, max_interval")
        return self


class TelemetryConfig(_Model):
    """Readings sent upstream by exception, batched per device. Off unless this section is
    given (or when ``enabled: false``)."""

    enabled: bool = Field(default=True, description="False keeps the section but sends nothing.")
    include: list[PointSelector] = Field(
        default_factory=lambda: [PointSelector()], max_length=200,
        description="Points reported; default: every point of every enabled device.")
    exclude: list[PointSelector] = Field(
        default_factory=list, max_length=200,
        description="Points never reported, even if included.")
    defaults: ReportPolicy = Field(default=ReportPolicy(),
                                   description="Report policy of every selected point.")
    overrides: list[TelemetryOverride] = Field(
        default_factory=list, max_length=200,
        description="Policies for some points; later matching entries win, key by key.")
    flush_every: Duration = Field(
        default=1.0, ge=0.1, le=60,
        description="Points due are collected this long, then sent, one message per device.")
    max_points_per_message: int = Field(
        default=200, ge=1, le=5000,
        description="A device with more points due is sent at once, in several messages.")
    queue: int = Field(
        default=10_000, ge=100, le=1_000_000,
        description="Readings waiting for the telemetry stage; beyond it the oldest are "
                    "dropped (counted) so that alarms never wait for telemetry.")
