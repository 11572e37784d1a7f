"""Northbound: alarms and work orders to the property-management platform."""

from gateway.upstream._contract import AlarmMessage, alarm_message
from gateway.upstream._mqtt import OutgoingMessage, UpstreamPublisher

__all__ = ["AlarmMessage", "OutgoingMessage", "UpstreamPublisher", "alarm_message"]
