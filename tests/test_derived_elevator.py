"""A controller that reports inspection, fire recall and out-of-service as separate bits drives
the unchanged elevator pack, through one derived ``service_mode``.

Real pieces: a pymodbus server serving the controller's own register map, the gateway's Modbus
driver, the point stage, the bus and the alarm engine with the bundled pack
(config/detectors/elevator.yaml) and profile (config/profiles/elevator-modbus.yaml). Time is the
fake clock: each step moves it one poll interval and waits until that poll's readings are in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.model import Value
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.gateway_support import running_gateway
from tests.support import free_port

# The vendor's map is the bundled profile's, except register 6: a bit word instead of a code.
#   bit 0 inspection, bit 1 fire recall (fire service phase I), bit 2 out of service.
SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
devices:
  - id: E7
    name: 7号梯
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    profile: elevator-modbus
    poll_interval: 1s
    timeout: 2s
    points:
      - {{name: mode_word, address: 6, type: uint16, description: "bit 0 inspection, 1 fire recall, 2 out of service"}}
    derived:
      - {{name: inspection, from: mode_word, bit: 0}}
      - {{name: fire_recall, from: mode_word, bit: 1}}
      - {{name: out_of_service, from: mode_word, bit: 2}}
      # The pack's codes (elevator-modbus profile): 0 out of service, 1 normal, 2 inspection,
      # 3 fire recall.
      - name: service_mode
        expr: "0 if out_of_service else 2 if inspection else 3 if fire_recall else 1"
detectors: [elevator]
"""

INSPECTION, FIRE_RECALL, OUT_OF_SERVICE = 0b001, 0b010, 0b100
#: Stopped between floors (outside the door zone), doors closed, a passenger inside.
STUCK = {0: 0, 1: 0, 2: 2, 3: 5, 4: 1, 5: 1, 7: 1, 8: 0, 9: 0, 10: 0, 11: 0}
RUNNING = {**STUCK, 0: 1, 1: 1}
ENTRAPMENT = {"elevator.trapped-between-floors", "elevator.stopped-outside-door-zone",
              "elevator.trapped-at-floor"}


class Site:
    def __init__(self, gateway: Gateway, clock: FakeClock, unit: SimUnit) -> None:
        self.gateway, self.clock, self.unit = gateway, clock, unit

    def registers(self, values: dict[int, int], mode_word: int) -> None:
        self.unit.holding.update({**values, 6: mode_word})

    def last(self, point: str) -> Value:
        snapshot = self.gateway.readings.snapshot("E7")["devices"]["E7"]
        return snapshot["last"][point]["value"]

    async def poll(self, seconds: int) -> None:
        """``seconds`` polls, each one second of fake time, each waited for."""
        for _ in range(seconds):
            await self.clock.advance(1)
            async with asyncio.timeout(10):
                while True:
                    last = self.gateway.readings.snapshot("E7")["devices"].get("E7")
                    mode = last["last"].get("service_mode") if last else None
                    if mode is not None and mode["received_ts"] == self.clock.time():
                        break
                    await asyncio.sleep(0.005)
            await self.clock.advance(0)  # let the alarm engine take that poll's readings

    def active(self) -> set[str]:
        return {e.rule_id for e in self.gateway.engine.active()}


@asynccontextmanager
async def running_site(clock: FakeClock) -> AsyncIterator[Site]:
    unit = SimUnit(1)
    unit.holding.update({**RUNNING, 6: 0})
    async with SimModbusServer([unit], port=free_port()) as server:
        gateway = Gateway(load_config_text(SITE.format(port=server.port)), clock=clock)
        async with running_gateway(gateway):
            site = Site(gateway, clock, unit)
            await site.poll(2)
            yield site


async def test_the_pack_reads_the_derived_service_mode(fake_clock: FakeClock) -> None:
    async with running_site(fake_clock) as site:
        assert site.last("service_mode") == 1

        # Inspection: the technician stops the car between floors and stays on it.
        site.registers(RUNNING, INSPECTION)
        await site.poll(1)
        assert site.last("service_mode") == 2 and site.last("inspection") is True
        site.registers(STUCK, INSPECTION)
        await site.poll(90)
        assert site.active() == set(), "inspection: entrapment rules suppressed"

        # Fire recall, straight from inspection (both bits change in one read).
        site.registers(STUCK, FIRE_RECALL)
        await site.poll(90)
        assert site.last("service_mode") == 3
        assert site.active() == set(), "fire recall: entrapment rules suppressed"

        # Out of service wins over the other bits.
        site.registers(STUCK, OUT_OF_SERVICE | FIRE_RECALL)
        await site.poll(90)
        assert site.last("service_mode") == 0
        assert site.active() == set()

        # Back to normal with the car still stuck and occupied: now it is an entrapment.
        site.registers(STUCK, 0)
        await site.poll(29)
        assert site.last("service_mode") == 1
        assert site.active() == set(), "not before the pack's 30 s"
        await site.poll(2)
        assert site.active() == {"elevator.trapped-between-floors"}
        (event,) = site.gateway.engine.active()
        assert event.priority == "P0"
        assert event.evidence["service_mode"] == 1
        assert "7号梯" in event.message_zh


async def test_with_the_mode_bits_cleared_the_pack_fires_as_usual(fake_clock: FakeClock) -> None:
    # The same controller in normal service: the derived point must not hide anything.
    async with running_site(fake_clock) as site:
        site.registers(STUCK, 0)
        await site.poll(61)
        assert ENTRAPMENT & site.active() == {"elevator.trapped-between-floors"}
        assert "elevator.stopped-outside-door-zone" not in site.active(), "occupied car"


@pytest.mark.parametrize("mode_word", [INSPECTION, FIRE_RECALL])
async def test_the_alarm_button_still_counts_in_special_modes(fake_clock: FakeClock,
                                                              mode_word: int) -> None:
    async with running_site(fake_clock) as site:
        site.registers({**STUCK, 8: 1}, mode_word)
        await site.poll(2)
        assert site.active() == {"elevator.alarm-button-outside-zone"}
