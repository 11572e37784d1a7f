"""Work orders raised from alarms: one per incident, with a response window."""

from gateway.workorders._desk import RESPONSE_WINDOWS, WorkOrderDesk, WorkOrderSink
from gateway.workorders._model import SCHEMA_VERSION, Bilingual, WorkOrder, WorkOrderLocation

__all__ = ["RESPONSE_WINDOWS", "SCHEMA_VERSION", "Bilingual", "WorkOrder", "WorkOrderDesk",
           "WorkOrderLocation", "WorkOrderSink"]
