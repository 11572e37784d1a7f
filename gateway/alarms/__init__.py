"""Alarm detection at the edge: rule conditions, on/off delays, alarm events."""

from gateway.alarms._conditions import Predicate, compile_condition
from gateway.alarms._engine import AlarmEngine, AlarmSink
from gateway.alarms._events import AlarmEvent, AlarmState

__all__ = ["AlarmEngine", "AlarmEvent", "AlarmSink", "AlarmState", "Predicate",
           "compile_condition"]
