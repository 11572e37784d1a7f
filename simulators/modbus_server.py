"""A Modbus TCP or RTU server holding the register images of one or more simulated units.

Built on pymodbus's server. Each :class:`SimUnit` is one slave id with its own four tables and
its own faults, so one server can be a single TCP device, a Modbus TCP gateway in front of many
units, or a whole RS-485 bus of meters.

Fault injection is per unit and takes effect on the next request:

* ``silent``: no answer at all (the client times out);
* ``delay``: answer after this many seconds;
* ``exception``: answer with this Modbus exception code (e.g. 2 illegal address, 6 busy);
* ``exception_blocks``: answer requests touching these register ranges with an exception code
  (a meter whose voltage block is missing from its map or whose measuring board failed),
  while the rest of the unit answers normally;
* ``corrupt``: answer with a damaged frame (bad CRC on RTU, bad length on TCP);
* ``garbage``: answer with a well-framed answer whose content makes no sense (an undefined
  function code and stray bytes, correct length and CRC), as a confused device or a unit
  with the wrong protocol configured does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["Faults", "SimModbusServer", "SimUnit", "crc16"]

log = logging.getLogger(__name__)

Table = Literal["coil", "discrete_input", "holding", "input"]
_FC_TABLE: dict[int, Table] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input",
                               3: "holding", 6: "holding", 16: "holding", 4: "input"}
_TABLE_SIZE = 65536


@dataclass
class Faults:
    """What a unit does wrong; change the fields at any time."""

    silent: bool = False
    delay: float = 0.0
    exception: int | None = None
    corrupt: bool = False
    garbage: bool = False
    #: (first, last) register address, inclusive -> the exception code a request touching
    #: the range gets.
    exception_blocks: dict[tuple[int, int], int] = field(default_factory=dict)

    def clear(self) -> None:
        self.silent, self.delay, self.exception, self.corrupt = False, 0.0, None, False
        self.garbage = False
        self.exception_blocks = {}


@dataclass
class SimUnit:
    """One Modbus slave: four sparse tables and its faults."""

    unit_id: int
    coils: dict[int, bool] = field(default_factory=dict)
    discrete_inputs: dict[int, bool] = field(default_factory=dict)
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    #: Requests answered, by function code (for tests that count coalesced reads).
    requests: Counter[int] = field(default_factory=Counter)
    #: Addresses served per table (0..size-1); beyond it the unit answers "illegal address".
    #: Default: just past the highest address set before the server starts, at least 256.
    size: int | None = None

    def table_size(self) -> int:
        if self.size is not None:
            return self.size
        used = [*self.coils, *self.discrete_inputs, *self.holding, *self.input]
        highest = max(used, default=0)
        return min(_TABLE_SIZE, max(256, (highest // 16 + 2) * 16))

    def set_registers(self, table: Literal["holding", "input"], address: int,
                      values: list[int]) -> None:
        target = self.holding if table == "holding" else self.input
        for i, value in enumerate(values):
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"register value {value} at {address + i} is not 0..65535")
            target[address + i] = value

    def set_bit(self, table: Literal["coil", "discrete_input"], address: int,
                value: bool) -> None:
        (self.coils if table == "coil" else self.discrete_inputs)[address] = bool(value)

    def registers(self, table: Literal["holding", "input"], address: int, count: int) -> list[int]:
        source = self.holding if table == "holding" else self.input
        return [source.get(address + i, 0) for i in range(count)]


class SimModbusServer:
    """Serves :class:`SimUnit` s over Modbus TCP (``host``/``port``) or RTU (``serial_port``).

    An async context manager: entering starts listening, leaving shuts this server down (and
    only this one; pymodbus's ``ServerAsyncStop`` would stop whichever server started last).
    """

    def __init__(
        self,
        units: list[SimUnit],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        parity: str = "N",
        bytesize: int = 8,
        stopbits: int = 1,
    ) -> None:
        if not units:
            raise ValueError("a Modbus server needs at least one unit")
        ids = [u.unit_id for u in units]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unit ids must be unique, got {ids}")
        if serial_port is None and port == 0:
            raise ValueError("give a TCP port (use a free one in tests) or a serial_port")
        self.units = {u.unit_id: u for u in units}
        self.host, self.port, self.serial_port = host, port, serial_port
        self.baudrate, self.parity, self.bytesize, self.stopbits = (baudrate, parity,
                                                                    bytesize, stopbits)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._pending_unit: int | None = None
        #: Requests being served; a ``delay`` fault can hold one long after shutdown.
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def where(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        if self._server is not None:
            raise RuntimeError("SimModbusServer is not reentrant")
        devices = [self._sim_device(uid) for uid in self.units]
        if self.serial_port is None:
            self._server = ModbusTcpServer(devices, address=(self.host, self.port),
                                           trace_packet=self._trace_tcp,
                                           trace_pdu=self._trace_pdu)
        else:
            self._server = ModbusSerialServer(devices, framer=FramerType.RTU,
                                              port=self.serial_port, timeout=0.5,
                                              trace_packet=self._trace_rtu,
                                              trace_pdu=self._trace_pdu,
                                              baudrate=self.baudrate, parity=self.parity,
                                              bytesize=self.bytesize, stopbits=self.stopbits)
        await self._server.serve_forever(background=True)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                await server.shutdown()  # type: ignore[no-untyped-call]  # untyped upstream
        # pymodbus runs each request as a detached task that shutdown() does not stop.
        pending = [t for t in self._in_flight if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    # -- pymodbus hooks

    def _sim_device(self, unit_id: int) -> SimDevice:
        unit = self.units[unit_id]

        async def action(fc: int, start: int, address: int, count: int,  # noqa: PLR0917
                         regs: list[int],  # pymodbus's SimAction signature is positional
                         values: list[int] | list[bool] | None) -> ExcCodes | None:
            task = asyncio.current_task()
            if task is None:  # not in a task: nothing that could outlive the server
                return await _serve(unit, fc, start, address, count, regs, values)
            self._in_flight.add(task)
            try:
                return await _serve(unit, fc, start, address, count, regs, values)
            finally:
                self._in_flight.discard(task)

        size = unit.table_size()
        # One SimData holding ``size`` bits, not ``count=size``: pymodbus 3.16 validates a bit
        # block as ``build_registers() * count`` with build_registers already multiplied by
        # count, i.e. size² bools (seconds and GBs for a meter with registers at 0x4000).
        bits = [SimData(0, values=[False] * size, datatype=DataType.BITS)]
        regs = [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(id=unit_id, simdata=(bits, list(bits), regs, list(regs)),
                         use_bit_addressing=True, action=action)

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            self._pending_unit = getattr(pdu, "dev_id", None)
        return pdu

    def _trace_tcp(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) < 8:
            return data
        return self._outgoing(data[6], data, corrupt_at=4, rtu=False)

    def _trace_rtu(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) < 4:
            return data
        return self._outgoing(data[0], data, corrupt_at=len(data) - 1, rtu=True)

    def _outgoing(self, unit_id: int, data: bytes, *, corrupt_at: int, rtu: bool) -> bytes:
        unit = self.units.get(unit_id)
        if unit is None or unit.faults.silent:
            return b""  # an absent or dead slave says nothing
        if unit.faults.garbage:
            if rtu:
                frame = bytes([unit_id]) + _GARBAGE_PDU
                return frame + crc16(frame).to_bytes(2, "little")
            # MBAP: transaction and protocol id kept, length = unit id + PDU.
            return data[:4] + (1 + len(_GARBAGE_PDU)).to_bytes(2, "big") + data[6:7] \
                + _GARBAGE_PDU
        if unit.faults.corrupt:
            damaged = bytearray(data)
            damaged[corrupt_at] ^= 0x5A
            return bytes(damaged)
        return data


#: Function code 0x55 is defined by no Modbus specification; the rest is noise.
_GARBAGE_PDU = bytes([0x55, 0xDE, 0xAD, 0xBE, 0xEF])


def crc16(frame: bytes) -> int:
    """Modbus RTU CRC (polynomial 0xA001 reflected, initial 0xFFFF; sent low byte first),
    computed here rather than borrowed so a garbage frame is still correctly framed."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


async def _serve(unit: SimUnit, fc: int, start: int, address: int, count: int,  # noqa: PLR0917
                 regs: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
    """Answer one request from the unit's tables, applying its faults first."""
    faults = unit.faults
    if faults.delay > 0:
        await asyncio.sleep(faults.delay)
    if faults.exception is not None:
        return ExcCodes(faults.exception)
    for (first, last), code in faults.exception_blocks.items():
        if address <= last and first < address + count:
            return ExcCodes(code)
    table = _FC_TABLE.get(fc)
    if table is None:
        return ExcCodes.ILLEGAL_FUNCTION
    unit.requests[fc] += 1
    # ``regs`` is pymodbus's whole backing block starting at ``start``; only the
    # requested window is refreshed from the unit's own tables.
    if table in ("holding", "input"):
        if values is not None and table == "holding":
            unit.set_registers("holding", address, [int(v) for v in values])
        source = unit.holding if table == "holding" else unit.input
        for i in range(count):
            regs[address - start + i] = source.get(address + i, 0)
        return None
    # Bit tables are packed 16 to a register (bit 0 = lowest address); count is in
    # registers here.
    store = unit.coils if table == "coil" else unit.discrete_inputs
    if values is not None and table == "coil":
        for i, v in enumerate(values):
            store[address + i] = bool(v)
    first = address // 16
    for i in range(count):
        word = 0
        for b in range(16):
            if store.get((first + i) * 16 + b, False):
                word |= 1 << b
        regs[first - start + i] = word
    return None
