"""Work orders raised from alarms and reported repairs: one per incident, response windows,
escalation ladder, and the history of every version for the operator console."""

from gateway.workorders._desk import RESPONSE_WINDOWS, EdgeStatus, WorkOrderDesk, WorkOrderSink
from gateway.workorders._log import (
    WorkOrderHistory,
    WorkOrderLog,
    WorkOrderLogHealth,
    work_order_log_path,
)
from gateway.workorders._model import (
    CLOSED_STATUSES,
    PLATFORM_STATUSES,
    SCHEMA_VERSION,
    Assignment,
    Bilingual,
    Escalation,
    FollowUp,
    PriorityOverride,
    ReportDetails,
    SlaBreach,
    StatusAnswer,
    Timestamp,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderLocation,
    WorkOrderStatus,
    parse_instant,
)
from gateway.workorders._reports import NewReport, ReportRefused, grade_report, shareable

__all__ = ["CLOSED_STATUSES", "PLATFORM_STATUSES", "RESPONSE_WINDOWS", "SCHEMA_VERSION",
           "Assignment", "Bilingual", "EdgeStatus", "Escalation", "FollowUp", "NewReport",
           "PriorityOverride",
           "ReportDetails", "ReportRefused", "SlaBreach", "StatusAnswer", "Timestamp", "WorkOrder",
           "WorkOrderDesk",
           "WorkOrderEvent", "WorkOrderHistory", "WorkOrderLocation", "WorkOrderLog",
           "WorkOrderLogHealth", "WorkOrderSink", "WorkOrderStatus", "grade_report",
           "parse_instant", "shareable",
           "work_order_log_path"]
