"""Group the configured Modbus devices into one :class:`ModbusLink` per connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drivers.modbus._plan import plan_device, silent_interval
from gateway.config import DeviceConfig, ModbusRtuDevice, ModbusTcpDevice

if TYPE_CHECKING:
    from drivers.modbus._link import ModbusDevice, ModbusLink
    from gateway.clock import Clock

# The link module (and with it pymodbus) is imported by the functions that need it:
# describe_polling serves `propgw check-config`, which must not pay for the protocol library.

__all__ = ["build_modbus_links", "describe_polling"]


def build_modbus_links(devices: Sequence[DeviceConfig], clock: Clock) -> list[ModbusLink]:
    """One link per TCP endpoint ``(host, port)`` and per serial port, in config order.

    Disabled devices and non-Modbus devices are left out.

    Args:
        devices: Every device of the site config (MQTT devices are ignored).
        clock: The clock every link schedules on.

    Returns:
        The links, ordered by their first device in ``devices``.

    Raises:
        ValueError: Devices on one serial port disagree on serial settings or unit ids (the
            config loader normally reports this first).
    """
    groups = _group(devices)
    if not groups:
        return []  # a site without Modbus devices never loads pymodbus
    from drivers.modbus._link import ModbusLink  # noqa: PLC0415 - see the imports

    return [ModbusLink(group, clock) for group in groups.values()]


def describe_polling(devices: Sequence[DeviceConfig]) -> list[str]:
    """One line per enabled Modbus device: its link, schedule and coalesced reads.

    For ``propgw check-config``; needs no connection and never raises on a loaded config.

    Args:
        devices: Every device of the site config (MQTT devices are ignored).

    Returns:
        Lines such as ``modbus[10.0.0.5:502] meter-1 unit 1: every 1s, timeout 1s,
        2 read(s): holding 0+10, input 100+4``.
    """
    lines = []
    for (_, *where), group in _group(devices).items():
        link = f"modbus[{':'.join(where)}]"
        first = group[0]
        if isinstance(first, ModbusRtuDevice):
            baud, parity, bits, stop = first.serial_settings
            gap = silent_interval(baud)
            link += f" {baud} {bits}{parity}{stop} (t3.5 {gap * 1000:.2f} ms)"
        for dev in group:
            blocks = plan_device(dev)
            reads = ", ".join(f"{b.table} {b.address}+{b.count}" for b in blocks) or "none"
            lines.append(f"{link} {dev.id} unit {dev.unit}: every {dev.poll_interval:g}s, "
                         f"timeout {dev.timeout:g}s, {len(blocks)} read(s): {reads}")
    return lines


def _group(devices: Sequence[DeviceConfig]) -> dict[tuple[str, ...], list[ModbusDevice]]:
    groups: dict[tuple[str, ...], list[ModbusDevice]] = {}
    for dev in devices:
        if not dev.enabled:
            continue
        if isinstance(dev, ModbusTcpDevice):
            groups.setdefault(("tcp", dev.host, str(dev.port)), []).append(dev)
        elif isinstance(dev, ModbusRtuDevice):
            groups.setdefault(("rtu", dev.port), []).append(dev)
    return groups
