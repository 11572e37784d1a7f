"""One poll of one Modbus device through the gateway's own link, with the raw answers kept.

The device is polled by a :class:`~drivers.modbus.ModbusLink` of its own, exactly as the running
gateway polls it (same coalesced reads, timeout, retries, RTU silent interval, decoder and
quality rules). The only addition is a tap on the pymodbus client that remembers what each read
answered, so the registers can be shown next to the values decoded from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from drivers.modbus import ModbusClient, ModbusLink, ModbusResponse, ReadBlock
from gateway.clock import Clock
from gateway.commission._rows import PointRow, after_decoding
from gateway.config import ModbusPoint, ModbusRtuDevice, ModbusTcpDevice
from gateway.model import Quality, Reading

__all__ = ["poll_once", "read_deadline"]

log = logging.getLogger(__name__)

ModbusDevice = ModbusTcpDevice | ModbusRtuDevice
Answers = dict[tuple[str, int], list[int] | list[bool]]

#: Slack on top of the device's own timeouts before a read is given up as hung.
_SLACK = 2.0


async def poll_once(device: ModbusDevice, points: Sequence[str], clock: Clock) -> list[PointRow]:
    """Poll ``device`` once and return a row per point in ``points`` (config order).

    Never raises for a device that fails: a refused connection or a silent unit gives
    comm-loss rows with the reason, as the gateway would record them.

    Raises:
        ValueError: The device cannot be polled at all (RTU unit 0, the broadcast address).
    """
    answers: Answers = {}
    link = _TappedLink(device, clock, answers)
    readings: dict[str, Reading] = {}
    wanted = {p.name for p in device.points}
    complete = asyncio.Event()

    async def sink(batch: Sequence[Reading], *, urgent: bool = False) -> None:
        for reading in batch:
            if complete.is_set():
                return  # a second cycle (short poll_interval) must not replace the first
            readings[reading.point] = reading
            if wanted <= readings.keys():
                complete.set()

    deadline = read_deadline(device, len(link.plan(device.id)))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(link.run(sink), name=f"read.{link.name}")
        try:
            async with asyncio.timeout(deadline):
                await complete.wait()
        except TimeoutError:
            log.debug("%s: no complete cycle within %.1fs", link.name, deadline)
        finally:
            task.cancel()
    blocks = link.plan(device.id)
    by_name = {p.name: p for p in device.points}
    return [_row(device, by_name[name], blocks, answers, readings.get(name), deadline=deadline)
            for name in points]


def read_deadline(device: ModbusDevice, blocks: int) -> float:
    """Longest one poll may take: connect, every read with its retries, then some slack."""
    per_read = device.timeout * (device.retries + 1)
    return device.timeout + max(1, blocks) * per_read + _SLACK


class _TappedLink(ModbusLink):
    """A link whose pymodbus client remembers every answer it hands to the driver."""

    def __init__(self, device: ModbusDevice, clock: Clock, answers: Answers) -> None:
        super().__init__([device], clock)
        self._answers = answers

    def _pymodbus_client(self) -> ModbusClient:
        return _Tap(super()._pymodbus_client(), self._answers)


class _Tap:
    """A :class:`~drivers.modbus.ModbusClient` in front of the real one; it only records."""

    def __init__(self, client: ModbusClient, answers: Answers) -> None:
        self._client = client
        self._answers = answers

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def connect(self) -> bool:
        return await self._client.connect()

    def close(self) -> None:
        self._client.close()

    def read_coils(self, address: int, *, count: int = 1, device_id: int = 1,
                   no_response_expected: bool = False) -> Awaitable[ModbusResponse]:
        return self._keep("coil", address, self._client.read_coils(
            address, count=count, device_id=device_id,
            no_response_expected=no_response_expected))

    def read_discrete_inputs(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False) -> Awaitable[ModbusResponse]:
        return self._keep("discrete_input", address, self._client.read_discrete_inputs(
            address, count=count, device_id=device_id,
            no_response_expected=no_response_expected))

    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                               no_response_expected: bool = False
                               ) -> Awaitable[ModbusResponse]:
        return self._keep("holding", address, self._client.read_holding_registers(
            address, count=count, device_id=device_id,
            no_response_expected=no_response_expected))

    def read_input_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False) -> Awaitable[ModbusResponse]:
        return self._keep("input", address, self._client.read_input_registers(
            address, count=count, device_id=device_id,
            no_response_expected=no_response_expected))

    async def _keep(self, table: str, address: int,
                    request: Awaitable[ModbusResponse]) -> ModbusResponse:
        response = await request
        if not response.isError():
            data: list[int] | list[bool] = (list(response.registers)
                                            if table in ("holding", "input")
                                            else [bool(b) for b in response.bits])
            self._answers.setdefault((table, address), data)
        return response


def _row(device: ModbusDevice, point: ModbusPoint, blocks: Sequence[ReadBlock],
         answers: Answers, reading: Reading | None, *, deadline: float) -> PointRow:
    block = next(b for b in blocks if point in b.points)
    data = answers.get((block.table, block.address))
    raw = _raw(point, block.slice_for(point, data)) if data is not None else ""
    source = f"{point.function} {point.address}"
    unit = point.unit or ""
    if reading is None:
        return PointRow(device.id, point.name, source, _decoding(point), raw, None,
                        Quality.COMM_LOSS, unit, f"no answer within {deadline:g}s")
    return PointRow(device.id, point.name, source, _decoding(point), raw, reading.value,
                    reading.quality, unit, reading.error)


def _raw(point: ModbusPoint, data: Sequence[Any]) -> str:
    if point.function in ("coil", "discrete_input"):
        return " ".join("1" if b else "0" for b in data)
    words = [int(w) for w in data]
    text = " ".join(f"0x{w:04X}" for w in words) + " = " + " ".join(str(w) for w in words)
    if point.type == "bit" and point.bit is not None and words:
        text += f" (bit {point.bit} = {(words[0] >> point.bit) & 1})"
    return text


def _decoding(point: ModbusPoint) -> str:
    parts: list[str] = [point.type]
    if point.type == "bit":
        parts.append(f"{point.bit}")
    if point.width > 1 and point.word_order == "little":
        parts.append("words little")
    if point.byte_order == "little":
        parts.append("bytes little")
    return " ".join(parts + after_decoding(point))
