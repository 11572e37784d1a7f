"""Modbus TCP/RTU driver: one :class:`ModbusLink` task per connection, coalesced reads.

Build the links from the site config with :func:`build_modbus_links` and run each one's
:meth:`ModbusLink.run` in the application's task group.
"""

from drivers.modbus._build import build_modbus_links, describe_polling
from drivers.modbus._codec import decode_point, decode_raw
from drivers.modbus._guard import (
    EXCEPTION_NAMES,
    ModbusClient,
    ModbusResponse,
    UndecodableAnswer,
    guarded_close,
    guarded_connect,
    guarded_read,
    survive_undecodable_answers,
)
from drivers.modbus._link import ClientFactory, ModbusDevice, ModbusLink, silent_interval
from drivers.modbus._plan import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    ReadBlock,
    plan_device,
    plan_reads,
)

__all__ = [
    "EXCEPTION_NAMES",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "ClientFactory",
    "ModbusClient",
    "ModbusDevice",
    "ModbusLink",
    "ModbusResponse",
    "ReadBlock",
    "UndecodableAnswer",
    "build_modbus_links",
    "decode_point",
    "decode_raw",
    "describe_polling",
    "guarded_close",
    "guarded_connect",
    "guarded_read",
    "plan_device",
    "plan_reads",
    "silent_interval",
    "survive_undecodable_answers",
]
