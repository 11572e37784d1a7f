"""Northbound: the outbox's alarms and work orders to the property-management platform.

The submodules load on first use (PEP 562): the HTTP publisher and the status API need
aiohttp, which a site with MQTT upstream only never imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_attributes

if TYPE_CHECKING:
    from gateway.upstream._contract import AlarmMessage, GatewayStatus, alarm_message
    from gateway.upstream._http import HttpPublisher
    from gateway.upstream._mqtt import AnswerHandler, UpstreamPublisher
    from gateway.upstream._status_api import PlatformEndpoint
    from gateway.upstream._telemetry import TelemetryMessage, TelemetryPoint

__all__ = ["AlarmMessage", "AnswerHandler", "GatewayStatus", "HttpPublisher", "PlatformEndpoint",
           "TelemetryMessage", "TelemetryPoint", "UpstreamPublisher", "alarm_message"]

_WHERE = {
    "AlarmMessage": "gateway.upstream._contract",
    "AnswerHandler": "gateway.upstream._mqtt",
    "GatewayStatus": "gateway.upstream._contract",
    "HttpPublisher": "gateway.upstream._http",
    "PlatformEndpoint": "gateway.upstream._status_api",
    "TelemetryMessage": "gateway.upstream._telemetry",
    "TelemetryPoint": "gateway.upstream._telemetry",
    "UpstreamPublisher": "gateway.upstream._mqtt",
    "alarm_message": "gateway.upstream._contract",
}


__getattr__ = lazy_attributes(globals(), _WHERE)
