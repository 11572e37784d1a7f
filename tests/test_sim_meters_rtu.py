"""Tier (b): fifty simulated meters on one Modbus RTU bus (a socat pty pair), one gateway link.

A pty has no baud-rate timing, so this checks correctness on a crowded bus, not speed; the
poll-cycle measurement and the wire-time budget live in ``bench/rtu_bus.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from drivers.modbus import build_modbus_links
from gateway.clock import SystemClock
from gateway.config import load_config_text
from gateway.model import Reading
from simulators.meters import MeterBus
from tests.test_modbus_support import running
from tests.test_sim_meters import EVENING, F32, site

pytestmark = pytest.mark.socat

METERS = 50
#: Bound on one full poll cycle of the bus; a cycle measures well under 2 s here.
CYCLE_LIMIT = 20.0


class CycleSink:
    """Collects readings and signals once every device has delivered each of its points."""

    def __init__(self, expected: dict[str, set[str]]) -> None:
        self.readings: list[Reading] = []
        self._missing = {device: set(points) for device, points in expected.items()}
        self.complete = asyncio.Event()

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        self.readings.extend(readings)
        for reading in readings:
            missing = self._missing.get(reading.device)
            if missing is not None:
                missing.discard(reading.point)
                if not missing:
                    del self._missing[reading.device]
        if not self._missing:
            self.complete.set()


@pytest.mark.parametrize("baud", [9600, 19200])
async def test_fifty_meters_on_one_rtu_bus_all_deliver(pty_pair: tuple[str, str],
                                                       baud: int) -> None:
    gw, bus_port = pty_pair
    bus = MeterBus.build(METERS, model=["sdm630", "dtsu666", "water"], seed=7,
                         time_of_day=EVENING, serial_port=bus_port, baudrate=baud)
    text = site(*(f"{{id: {m.name}, driver: modbus-rtu, port: {gw}, baudrate: {baud}, "
                  f"unit: {m.unit.unit_id}, profile: {m.register_map.profile}, "
                  f"poll_interval: 60s, timeout: 1s}}" for m in bus.meters))
    links = build_modbus_links(load_config_text(text).devices, SystemClock())
    assert len(links) == 1, "one serial port, one link"
    link = links[0]
    assert len(link.device_ids) == METERS
    assert link.inter_frame_delay == pytest.approx(3.5 * 11 / baud)
    sink = CycleSink({m.name: set(m.register_map.registers) for m in bus.meters})
    async with bus, running(link, sink):
        started = time.monotonic()
        async with asyncio.timeout(CYCLE_LIMIT):
            await sink.complete.wait()
        cycle = time.monotonic() - started
    assert cycle < CYCLE_LIMIT

    bad = [r for r in sink.readings if not r.good]
    assert not bad, bad[:3]
    per_device = Counter(r.device for r in sink.readings)
    for m in bus.meters:
        # Exactly one reading per point: one full cycle, no duplicates, nothing missing.
        assert per_device[m.name] == len(m.register_map.registers), m.name
        values = {r.point: r.value for r in sink.readings if r.device == m.name}
        for name, expected in m.snapshot()["values"].items():
            assert values[name] == pytest.approx(expected, rel=F32, abs=1e-9), (m.name, name)
        # Each unit answered exactly the coalesced reads the gateway planned for it.
        planned = Counter({"holding": 3, "input": 4}[b.table] for b in link.plan(m.name))
        assert m.unit.requests == planned, m.name
    assert link.health().devices == dict.fromkeys(link.device_ids, "ok")
