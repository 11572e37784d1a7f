"""Alarm detection at the edge: rule conditions, on/off delays, the ISA-18.2 lifecycle
(journal, operator actions, incidents, chatter and floods) and alarm KPIs."""

from gateway.alarms._actions import AlarmActions
from gateway.alarms._conditions import (
    Context,
    LearnedLevel,
    Node,
    OnDevice,
    compile_condition,
    learned_levels,
    learns,
    reference_nodes,
    restore_levels,
    site_zone,
)
from gateway.alarms._engine import AlarmEngine, AlarmSink
from gateway.alarms._events import (
    AlarmEvent,
    AlarmState,
    Detection,
    LifecycleState,
    Transition,
)
from gateway.alarms._flood import FloodDetector, FloodState, chatter_window
from gateway.alarms._journal import AlarmJournal, JournalBatch, JournalState, journal_path
from gateway.alarms._kpi import (
    ActiveAlarm,
    AlarmReport,
    FloodSummary,
    ListedAlarm,
    alarm_report,
    render_report,
)
from gateway.alarms._learned import LearnedStore, learned_path
from gateway.alarms._lifecycle import AlarmBook, AlarmListener
from gateway.alarms._lifecycle_state import AlarmRecord, Hold, Shelf
from gateway.alarms._rules import DetectionSink, RuleEvaluator

__all__ = [
    "ActiveAlarm",
    "AlarmActions",
    "AlarmBook",
    "AlarmEngine",
    "AlarmEvent",
    "AlarmJournal",
    "AlarmListener",
    "AlarmRecord",
    "AlarmReport",
    "AlarmSink",
    "AlarmState",
    "Context",
    "Detection",
    "DetectionSink",
    "FloodDetector",
    "FloodState",
    "FloodSummary",
    "Hold",
    "JournalBatch",
    "JournalState",
    "LearnedLevel",
    "LearnedStore",
    "LifecycleState",
    "ListedAlarm",
    "Node",
    "OnDevice",
    "RuleEvaluator",
    "Shelf",
    "Transition",
    "alarm_report",
    "chatter_window",
    "compile_condition",
    "journal_path",
    "learned_levels",
    "learned_path",
    "learns",
    "reference_nodes",
    "render_report",
    "restore_levels",
    "site_zone",
]
