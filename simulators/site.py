"""A simulated site: the devices of a scenario, served on loopback, driven by its timeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from gateway.clock import Clock
from simulators.base import ActionError, Simulator
from simulators.modbus_server import SimModbusServer, SimUnit
from simulators.registry import MODBUS_KINDS, create
from simulators.scenario import Scenario

__all__ = ["Endpoint", "SerialLine", "SimSite", "free_port"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where the gateway reaches one simulated device."""

    device: str
    kind: str
    protocol: str  # "modbus-tcp", "modbus-rtu" (host is then the serial port) or "mqtt"
    host: str
    port: int
    unit: int | None = None

    @property
    def url(self) -> str:
        unit = f" unit {self.unit}" if self.unit is not None else ""
        if self.protocol == "modbus-rtu":
            return f"{self.protocol}:{self.host}{unit}"
        return f"{self.protocol}://{self.host}:{self.port}{unit}"


@dataclass(frozen=True)
class SerialLine:
    """A serial port (an RS-485 adapter, or one end of a socat pty pair) that every Modbus
    simulator of a site serves on, as units of one RTU line, instead of TCP."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    bytesize: int = 8
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class SimSite:
    """Starts every simulator of a scenario and plays its timeline.

    Modbus devices get a TCP server each, or share one per ``bus`` (like a Modbus TCP gateway
    in front of an RS-485 line), or with ``serial`` all share one RTU line on that port; MQTT
    devices publish to ``broker``.
    """

    def __init__(self, scenario: Scenario, *, clock: Clock,
                 broker: tuple[str, int] | None = None, host: str = "127.0.0.1",
                 on_event: Callable[[float, str], None] | None = None,
                 serial: SerialLine | None = None) -> None:
        self.scenario = scenario
        self.serial = serial
        self.clock = clock
        self.broker = broker
        self.host = host
        self.on_event = on_event or (lambda t, text: None)
        self.sims: dict[str, Simulator] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.events: list[tuple[float, str]] = []
        self._stack = contextlib.AsyncExitStack()
        self.t0 = 0.0

    async def __aenter__(self) -> Self:
        for i, spec in enumerate(self.scenario.devices):
            self.sims[spec.id] = create(spec, clock=self.clock,
                                        seed=self.scenario.seed * 1000 + i, broker=self.broker,
                                        start_seconds=self.scenario.start_seconds)
        buses: dict[str, list[str]] = {}
        for spec in self.scenario.devices:
            if spec.kind in MODBUS_KINDS:
                bus = "serial" if self.serial else spec.bus or f"own:{spec.id}"
                buses.setdefault(bus, []).append(spec.id)
            elif self.broker is not None:
                self.endpoints[spec.id] = Endpoint(spec.id, spec.kind, "mqtt", *self.broker)
        await self._stack.__aenter__()
        try:
            for members in buses.values():
                units: list[SimUnit] = [self.sims[m].unit for m in members]  # type: ignore[attr-defined]
                server = await self._stack.enter_async_context(self._server(members, units))
                for member, unit in zip(members, units, strict=True):
                    kind = self.scenario.device(member).kind
                    self.endpoints[member] = (
                        Endpoint(member, kind, "modbus-rtu", self.serial.port, 0, unit.unit_id)
                        if self.serial else
                        Endpoint(member, kind, "modbus-tcp", self.host, server.port,
                                 unit.unit_id))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    def _server(self, members: list[str], units: list[SimUnit]) -> SimModbusServer:
        line = self.serial
        if line is not None:
            return SimModbusServer(units, serial_port=line.port, baudrate=line.baudrate,
                                   parity=line.parity, bytesize=line.bytesize,
                                   stopbits=line.stopbits)
        fixed = [p for m in members if (p := self.scenario.device(m).port) is not None]
        return SimModbusServer(units, host=self.host, port=fixed[0] if fixed else free_port())

    def apply(self, device: str, action: str, params: dict[str, Any] | None = None,
              note: str | None = None) -> str:
        """Run one action on one device now and record it."""
        sim = self.sims.get(device)
        if sim is None:
            raise ActionError(f"no device {device!r} (devices: {', '.join(self.sims)})")
        text = sim.apply(action, params or {})
        t = self.clock.monotonic() - self.t0
        self.events.append((t, text))
        self.on_event(t, text if note is None else f"{text}. {note}")
        return text

    async def run(self, *, hold: bool = False) -> None:
        """Run the simulators and the timeline; returns after the scenario's duration, or
        with ``hold`` keeps the devices running after the timeline until cancelled."""
        self.t0 = self.clock.monotonic()
        async with asyncio.TaskGroup() as tg:
            sims = [tg.create_task(sim.run(), name=f"sim[{name}]")
                    for name, sim in self.sims.items()]
            for step in sorted(self.scenario.timeline, key=lambda s: s.at):
                await self.clock.sleep_until(self.t0 + step.at)
                self.apply(step.device, step.do, step.params, step.note)
            if hold:
                await asyncio.Event().wait()
            await self.clock.sleep_until(self.t0 + self.scenario.duration)
            for task in sims:
                task.cancel()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for simulators and the
    demo's embedded broker; the OS may hand it out again, so bind it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
