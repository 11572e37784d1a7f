"""Helpers shared by the Modbus driver tests (this module holds no tests of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from drivers.base import ReadingSink
from drivers.modbus import ModbusLink
from gateway.config import ModbusPoint, ModbusRtuDevice, ModbusTcpDevice
from gateway.model import Quality, Reading

__all__ = ["WAIT", "Collector", "NotifyingCounter", "point", "rtu_device", "running",
           "tcp_device"]

#: Every wait for a condition in the Modbus tests is bounded by this many seconds.
WAIT = 3.0


class Collector:
    """A reading sink that remembers everything and lets a test wait for a condition."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.readings: list[Reading] = []
        #: When each reading arrived, on ``now`` (the real monotonic clock by default).
        self.arrived: list[float] = []
        self._now = now
        self._changed = asyncio.Condition()

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        self.readings.extend(readings)
        self.arrived.extend([self._now()] * len(readings))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; TimeoutError after :data:`WAIT` seconds."""
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(predicate)

    def of(self, device: str, name: str | None = None) -> list[Reading]:
        return [r for r in self.readings
                if r.device == device and (name is None or r.point == name)]

    def latest(self, device: str, name: str) -> Reading | None:
        found = self.of(device, name)
        return found[-1] if found else None

    def latest_all(self, device: str, names: Sequence[str], quality: Quality) -> bool:
        """Whether the latest reading of every named point has this quality."""
        for n in names:
            r = self.latest(device, n)
            if r is None or r.quality is not quality:
                return False
        return True

    def times_of(self, device: str, name: str, quality: Quality = Quality.GOOD) -> list[float]:
        return [t for r, t in zip(self.readings, self.arrived, strict=True)
                if r.device == device and r.point == name and r.quality is quality]


class NotifyingCounter(Counter[int]):
    """A ``SimUnit.requests`` counter that a test can wait on (the server only counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __setitem__(self, key: int, value: int) -> None:
        super().__setitem__(key, value)
        self.changed.set()

    async def wait_until(self, fc: int, count: int) -> None:
        """Return once ``self[fc] >= count``; TimeoutError after :data:`WAIT` seconds."""
        async with asyncio.timeout(WAIT):
            while self[fc] < count:
                self.changed.clear()
                await self.changed.wait()


def point(name: str, address: int, **kw: Any) -> ModbusPoint:
    return ModbusPoint.model_validate({"name": name, "address": address, **kw})


def tcp_device(dev_id: str, port: int, points: list[ModbusPoint], **kw: Any) -> ModbusTcpDevice:
    data: dict[str, Any] = {"id": dev_id, "driver": "modbus-tcp", "host": "127.0.0.1",
                            "port": port, "points": points}
    return ModbusTcpDevice.model_validate({**data, **kw})


def rtu_device(dev_id: str, port: str, points: list[ModbusPoint], **kw: Any) -> ModbusRtuDevice:
    data: dict[str, Any] = {"id": dev_id, "driver": "modbus-rtu", "port": port,
                            "points": points}
    return ModbusRtuDevice.model_validate({**data, **kw})


@contextlib.asynccontextmanager
async def running(link: ModbusLink, sink: ReadingSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run the link as a task; on exit cancel it and re-raise anything it died of."""
    task = asyncio.create_task(link.run(sink), name=f"{link.name}.run")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
