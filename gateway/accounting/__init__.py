"""Energy and water accounting: consumption per hour and day, per meter and per building."""

from gateway.accounting._counter import Closed, CounterAccount, Step, interval_of
from gateway.accounting._stage import Accounting, accounting_path
from gateway.accounting._virtual import (
    BUILDING_KIND,
    BUILDING_PREFIX,
    accounted_points,
    building_devices,
)

__all__ = ["BUILDING_KIND", "BUILDING_PREFIX", "Accounting", "Closed", "CounterAccount", "Step",
           "accounted_points", "accounting_path", "building_devices", "interval_of"]
