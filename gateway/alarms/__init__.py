"""Alarm detection at the edge: rule conditions, on/off delays, alarm events."""

from gateway.alarms._conditions import Context, Node, compile_condition
from gateway.alarms._engine import AlarmEngine, AlarmSink
from gateway.alarms._events import AlarmEvent, AlarmState, Detection
from gateway.alarms._rules import DetectionSink, RuleEvaluator

__all__ = ["AlarmEngine", "AlarmEvent", "AlarmSink", "AlarmState", "Context", "Detection",
           "DetectionSink", "Node", "RuleEvaluator", "compile_condition"]
