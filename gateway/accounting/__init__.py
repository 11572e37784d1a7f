"""Energy and water accounting: consumption per hour and day, per meter and per building."""

from gateway.accounting._counter import Closed, CounterAccount, Step, interval_of
from gateway.accounting._stage import BUILDING_PREFIX, Accounting, accounting_path

__all__ = ["BUILDING_PREFIX", "Accounting", "Closed", "CounterAccount", "Step",
           "accounting_path", "interval_of"]
