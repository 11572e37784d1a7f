"""Northbound: the outbox's alarms and work orders to the property-management platform."""

from gateway.upstream._contract import AlarmMessage, GatewayStatus, alarm_message
from gateway.upstream._http import HttpPublisher
from gateway.upstream._mqtt import AnswerHandler, UpstreamPublisher
from gateway.upstream._status_api import PlatformEndpoint

__all__ = ["AlarmMessage", "AnswerHandler", "GatewayStatus", "HttpPublisher", "PlatformEndpoint",
           "UpstreamPublisher", "alarm_message"]
