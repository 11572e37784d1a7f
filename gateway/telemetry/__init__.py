"""Telemetry upstream: readings reported by exception, batched per device, via the outbox."""

from __future__ import annotations

from gateway.telemetry._exception import Reason, Report, ReportByException, significant
from gateway.telemetry._selection import PointSpec, Selection
from gateway.telemetry._stage import CHANNEL, TelemetryStage, TelemetryStats

__all__ = ["CHANNEL", "PointSpec", "Reason", "Report", "ReportByException", "Selection",
           "TelemetryStage", "TelemetryStats", "significant"]
