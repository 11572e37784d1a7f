"""Modbus TCP/RTU driver: one :class:`ModbusLink` task per connection, coalesced reads.

Build the links from the site config with :func:`build_modbus_links` and run each one's
:meth:`ModbusLink.run` in the application's task group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_attributes

if TYPE_CHECKING:
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
    from drivers.modbus._link import ClientFactory, ModbusDevice, ModbusLink
    from drivers.modbus._plan import (
        MAX_READ_BITS,
        MAX_READ_REGISTERS,
        ReadBlock,
        plan_device,
        plan_reads,
        silent_interval,
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

#: Where each name lives. The submodules load on first use, so that `check-config` can
#: plan the polling without importing the protocol library (PEP 562).
_WHERE = {
    "ClientFactory": "drivers.modbus._link",
    "EXCEPTION_NAMES": "drivers.modbus._guard",
    "MAX_READ_BITS": "drivers.modbus._plan",
    "MAX_READ_REGISTERS": "drivers.modbus._plan",
    "ModbusClient": "drivers.modbus._guard",
    "ModbusDevice": "drivers.modbus._link",
    "ModbusLink": "drivers.modbus._link",
    "ModbusResponse": "drivers.modbus._guard",
    "ReadBlock": "drivers.modbus._plan",
    "UndecodableAnswer": "drivers.modbus._guard",
    "build_modbus_links": "drivers.modbus._build",
    "decode_point": "drivers.modbus._codec",
    "decode_raw": "drivers.modbus._codec",
    "describe_polling": "drivers.modbus._build",
    "guarded_close": "drivers.modbus._guard",
    "guarded_connect": "drivers.modbus._guard",
    "guarded_read": "drivers.modbus._guard",
    "plan_device": "drivers.modbus._plan",
    "plan_reads": "drivers.modbus._plan",
    "silent_interval": "drivers.modbus._plan",
    "survive_undecodable_answers": "drivers.modbus._guard",
}


__getattr__ = lazy_attributes(globals(), _WHERE)
