"""Work orders raised from alarms: one per incident, response windows, escalation ladder."""

from gateway.workorders._desk import RESPONSE_WINDOWS, WorkOrderDesk, WorkOrderSink
from gateway.workorders._model import (
    CLOSED_STATUSES,
    PLATFORM_STATUSES,
    SCHEMA_VERSION,
    Bilingual,
    Escalation,
    SlaBreach,
    StatusAnswer,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderLocation,
    WorkOrderStatus,
)

__all__ = ["CLOSED_STATUSES", "PLATFORM_STATUSES", "RESPONSE_WINDOWS", "SCHEMA_VERSION",
           "Bilingual", "Escalation", "SlaBreach", "StatusAnswer", "WorkOrder", "WorkOrderDesk",
           "WorkOrderEvent", "WorkOrderLocation", "WorkOrderSink", "WorkOrderStatus"]
