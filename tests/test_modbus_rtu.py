"""Tier (b): Modbus RTU over a real serial line (a socat pty pair), several units per bus."""

from __future__ import annotations

import pytest

from drivers.modbus import ModbusLink
from gateway.clock import SystemClock
from gateway.config import ModbusPoint
from gateway.model import Quality
from simulators.encoding import encode
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.test_modbus_support import Collector, point, rtu_device, running

pytestmark = pytest.mark.socat

BAUD = 19200


def _meter(unit_id: int) -> tuple[SimUnit, list[ModbusPoint], dict[str, object]]:
    """An energy meter: float32 (little word order) voltage, uint32 energy, status, a coil."""
    unit = SimUnit(unit_id)
    volts, kwh, status = 229.5 + unit_id, 100_000 * unit_id + 7, unit_id % 2
    unit.set_registers("input", 0, encode(volts, "float32", word_order="little"))
    unit.set_registers("holding", 10, encode(kwh, "uint32"))
    unit.set_registers("holding", 12, [status])
    unit.set_bit("coil", 5, True)
    points = [
        point("volts", 0, function="input", type="float32", word_order="little"),
        point("kwh", 10, type="uint32", scale=0.01),
        point("state", 12, map={0: "ok", 1: "alarm"}),
        point("relay", 5, function="coil", type="bool"),
    ]
    expected: dict[str, object] = {"volts": volts, "kwh": kwh * 0.01,
                                   "state": "ok" if status == 0 else "alarm", "relay": True}
    return unit, points, expected


async def test_several_units_on_one_bus(pty_pair: tuple[str, str]) -> None:
    gw, bus = pty_pair
    meters = [_meter(u) for u in (1, 2, 7)]
    devices = [rtu_device(f"meter-{m.unit_id}", gw, pts, unit=m.unit_id, baudrate=BAUD,
                          poll_interval=60) for m, pts, _ in meters]
    link = ModbusLink(devices, SystemClock())
    assert link.name == f"modbus[{gw}]"
    sink = Collector()
    async with SimModbusServer([m for m, _, _ in meters], serial_port=bus, baudrate=BAUD), \
            running(link, sink):
        await sink.wait_for(lambda: len(sink.readings) == 12)
    for unit, _, expected in meters:
        for name, value in expected.items():
            got = sink.latest(f"meter-{unit.unit_id}", name)
            assert got is not None
            assert got.good, got
            assert got.value == (pytest.approx(value) if isinstance(value, float) else value)
        # kwh and state coalesce into one FC3 read.
        assert dict(unit.requests) == {1: 1, 3: 1, 4: 1}


async def test_silent_and_corrupt_units_do_not_stop_the_bus(pty_pair: tuple[str, str]) -> None:
    gw, bus = pty_pair
    units = [SimUnit(u) for u in (1, 2, 3)]
    for u in units:
        u.set_registers("holding", 0, [u.unit_id])
    devices = [rtu_device(f"m{u.unit_id}", gw, [point("v", 0)], unit=u.unit_id,
                          baudrate=BAUD, poll_interval=0.05, timeout=0.2, max_backoff=1)
               for u in units]
    link = ModbusLink(devices, SystemClock())
    sink = Collector()
    async with SimModbusServer(units, serial_port=bus, baudrate=BAUD), \
            running(link, sink) as task:
        await sink.wait_for(lambda: all(sink.latest_all(f"m{u}", ["v"], Quality.GOOD)
                                        for u in (1, 2, 3)))
        units[1].faults.silent = True
        units[2].faults.corrupt = True  # bad CRC: the frame is dropped, like line noise
        await sink.wait_for(lambda: sink.latest_all("m2", ["v"], Quality.COMM_LOSS)
                            and sink.latest_all("m3", ["v"], Quality.COMM_LOSS))
        good_before = len(sink.times_of("m1", "v"))
        await sink.wait_for(lambda: len(sink.times_of("m1", "v")) >= good_before + 5)
        assert link.health().devices == {"m1": "ok", "m2": "comm-loss", "m3": "comm-loss"}
        units[1].faults.clear()
        units[2].faults.clear()
        await sink.wait_for(lambda: all(sink.latest_all(f"m{u}", ["v"], Quality.GOOD)
                                        for u in (1, 2, 3)))
        assert not task.done()
    values = {r.device: r.value for r in sink.readings if r.good}
    assert values == {"m1": 1, "m2": 2, "m3": 3}


async def test_exception_code_on_rtu(pty_pair: tuple[str, str]) -> None:
    gw, bus = pty_pair
    unit = SimUnit(5)
    unit.faults.exception = 6
    link = ModbusLink([rtu_device("m", gw, [point("v", 0)], unit=5, baudrate=BAUD)],
                      SystemClock())
    sink = Collector()
    async with SimModbusServer([unit], serial_port=bus, baudrate=BAUD), running(link, sink):
        await sink.wait_for(lambda: bool(sink.readings))
    reading = sink.readings[0]
    assert reading.quality is Quality.BAD
    assert reading.error == "holding 0: exception code 6 (server device busy)"
