"""Work orders raised from alarms: one per incident, response windows, escalation ladder,
and the history of every version for the operator console."""

from gateway.workorders._desk import RESPONSE_WINDOWS, WorkOrderDesk, WorkOrderSink
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
    Bilingual,
    Escalation,
    SlaBreach,
    StatusAnswer,
    Timestamp,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderLocation,
    WorkOrderStatus,
    parse_instant,
)

__all__ = ["CLOSED_STATUSES", "PLATFORM_STATUSES", "RESPONSE_WINDOWS", "SCHEMA_VERSION",
           "Bilingual", "Escalation", "SlaBreach", "StatusAnswer", "Timestamp", "WorkOrder",
           "WorkOrderDesk",
           "WorkOrderEvent", "WorkOrderHistory", "WorkOrderLocation", "WorkOrderLog",
           "WorkOrderLogHealth", "WorkOrderSink", "WorkOrderStatus", "parse_instant",
           "work_order_log_path"]
