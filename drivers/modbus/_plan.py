"""Coalesce a device's points into as few Modbus reads as the protocol allows.

Run once at start-up. Each round trip on a serial bus costs tens of milliseconds of turnaround
(docs/facility-rules.md#modbus-rtu-timing), so reading one block of 20 registers is far cheaper
than 10 reads of two; reading a few unused registers in between is cheaper still than a second
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.config import ModbusPoint, ModbusRtuDevice, ModbusTcpDevice

__all__ = ["MAX_READ_BITS", "MAX_READ_REGISTERS", "ReadBlock", "plan_device", "plan_reads",
           "silent_interval"]

#: Modbus application protocol v1.1b3 §6.3/§6.4: at most 125 registers per FC3/FC4 read.
MAX_READ_REGISTERS = 125
#: Same spec §6.1/§6.2: at most 2000 coils or discrete inputs per FC1/FC2 read.
MAX_READ_BITS = 2000

_T = TypeVar("_T")

_TABLE_ORDER = ("coil", "discrete_input", "holding", "input")


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``.

    Attributes:
        table: ``coil``, ``discrete_input``, ``holding`` or ``input``.
        address: First address read (0-based protocol address).
        count: Registers (bits for coil/discrete_input tables) read.
        points: Points served by this read, in address order; they may overlap.
    """

    table: str
    address: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.address + self.count

    def slice_for(self, point: ModbusPoint, data: Sequence[_T]) -> Sequence[_T]:
        """The part of this block's response that holds ``point``."""
        start = point.address - self.address
        return data[start:start + point.width]


def plan_reads(
    points: Sequence[ModbusPoint],
    *,
    max_gap: int,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
) -> list[ReadBlock]:
    """Group points into reads, per table, bridging holes of at most ``max_gap`` addresses.

    Args:
        points: Points of one device (any tables, any order; overlaps allowed).
        max_gap: Most unused registers (bits, in bit tables) one read may span between points.
        max_registers: Largest register read (FC3/FC4).
        max_bits: Largest bit read (FC1/FC2).

    Returns:
        Blocks ordered by table (coil, discrete_input, holding, input), then address.

    Raises:
        ValueError: A limit is below 4 registers / 1 bit or ``max_gap`` is negative.
    """
    if max_gap < 0 or max_registers < 4 or max_bits < 1:
        raise ValueError(f"invalid plan limits: max_gap={max_gap} "
                         f"max_registers={max_registers} max_bits={max_bits}")
    blocks: list[ReadBlock] = []
    for table in _TABLE_ORDER:
        in_table = sorted((p for p in points if p.function == table),
                          key=lambda p: (p.address, -p.width, p.name))
        limit = max_bits if table in ("coil", "discrete_input") else max_registers
        blocks += _coalesce(table, in_table, max_gap, limit)
    return blocks


def plan_device(device: ModbusTcpDevice | ModbusRtuDevice) -> list[ReadBlock]:
    """:func:`plan_reads` for one device's points with its ``max_gap``."""
    return plan_reads(device.points, max_gap=device.max_gap)


def silent_interval(baudrate: int) -> float:
    """Modbus RTU t3.5: the silence that must separate two frames on the bus.

    3.5 character times of 11 bits; above 19200 bps the spec fixes it at 1.75 ms
    (Modbus over serial line v1.02, §2.5.1.1).
    """
    if baudrate > 19200:
        return 0.00175
    return 3.5 * 11 / baudrate


def _coalesce(table: str, points: list[ModbusPoint], max_gap: int,
              limit: int) -> list[ReadBlock]:
    blocks: list[ReadBlock] = []
    members: list[ModbusPoint] = []
    start = end = 0
    for point in points:
        p_end = point.address + point.width
        if members and point.address - end <= max_gap and max(end, p_end) - start <= limit:
            members.append(point)
            end = max(end, p_end)
            continue
        if members:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
        members, start, end = [point], point.address, p_end
    if members:
        blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return blocks
