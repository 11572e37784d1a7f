"""A comm-loss rule's ``for`` counts from the device's last answer, not from the first request
that went unanswered (whose timeout and retries would otherwise add to every delay)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from drivers.modbus import ModbusLink
from gateway.alarms import Detection, RuleEvaluator
from gateway.bus import Bus
from gateway.clock import FakeClock, SystemClock
from gateway.config import load_config_text
from gateway.model import Quality, Reading
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.support import Mosquitto, free_port
from tests.test_mqtt_driver import DOORS, FIRE, Sink, only_driver, publish, running, site_config

METER_SITE = """
site: {id: s, name: s, gateway_id: g}
devices:
  - {id: M1, driver: modbus-tcp, host: 127.0.0.1, profile: eastron-sdm630, poll_interval: 1s,
     timeout: 1s}
detectors: [energy]
"""


class Rig:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")
        self.t0 = clock.monotonic()
        self.detections: list[Detection] = []
        self.config = load_config_text(METER_SITE)
        self.points = [p.name for p in self.config.devices[0].points]

        async def sink(d: Detection) -> None:
            self.detections.append(d)

        self.rules = RuleEvaluator(self.config, clock, sink)

    def offline(self) -> list[tuple[bool, float]]:
        """(active, seconds since start) of the pack's meter-offline alarm."""
        return [(d.active, round(d.mono - self.t0, 3)) for d in self.detections
                if d.rule_id == "energy.offline"]

    async def poll(self, quality: Quality, silent_since: float | None = None) -> None:
        ts = self.clock.time()
        for name in self.points:
            await self.bus.publish(Reading("M1", name, 230.0 if quality is Quality.GOOD
                                           else None, quality, ts, silent_since=silent_since))
        await self.clock.advance(0)


@pytest.fixture
async def rig(fake_clock: FakeClock) -> AsyncIterator[Rig]:
    made = Rig(fake_clock)
    task = asyncio.create_task(made.rules.run(made.feed))
    yield made
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_meter_loss_is_reported_60_s_after_its_last_answer(
        rig: Rig, fake_clock: FakeClock) -> None:
    await rig.poll(Quality.GOOD)  # the last answer, at 0 s
    last_answer = fake_clock.time()
    # The next poll (1 s) times out after 1 s: the first comm-loss reading arrives at 2 s.
    await fake_clock.advance(2)
    await rig.poll(Quality.COMM_LOSS, silent_since=last_answer)
    await fake_clock.advance(57.5)
    assert rig.offline() == []
    await fake_clock.advance(1)
    assert rig.offline() == [(True, 60.0)]
    (alarm,) = [d for d in rig.detections if d.rule_id == "energy.offline"]
    assert alarm.condition_since == last_answer, "the alarm says since when it is silent"
    await rig.poll(Quality.GOOD)
    assert rig.offline() == [(True, 60.0), (False, 60.5)]


async def test_a_reading_that_knows_no_last_answer_starts_the_delay_on_arrival(
        rig: Rig, fake_clock: FakeClock) -> None:
    await rig.poll(Quality.GOOD)
    await fake_clock.advance(2)
    await rig.poll(Quality.COMM_LOSS)  # e.g. a reading made by the gateway, not the driver
    await fake_clock.advance(61)
    assert rig.offline() == [(True, 62.0)]


async def test_loss_longer_than_for_before_its_first_report_raises_at_once(
        rig: Rig, fake_clock: FakeClock) -> None:
    """A meter backed off to 30 s probes is reported as soon as its silence is known to
    exceed ``for``, not ``for`` later."""
    await rig.poll(Quality.GOOD)
    last_answer = fake_clock.time()
    await fake_clock.advance(75)
    await rig.poll(Quality.COMM_LOSS, silent_since=last_answer)
    assert rig.offline() == [(True, 75.0)]


# --------------------------------------------------------------------------- real Modbus


@contextlib.asynccontextmanager
async def _running(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("failure", ["silent", "stopped"])
async def test_real_modbus_device_going_silent_is_timed_from_its_last_answer(
        failure: str) -> None:
    """A real pymodbus server stops answering (or stops); the alarm's start is the last good
    answer and it fires ``for`` after it, although the first comm-loss reading is later."""
    port = free_port()
    unit = SimUnit(1)
    unit.set_registers("holding", 0, [7])
    config = load_config_text(f"""
site: {{id: s, name: s, gateway_id: g}}
devices:
  - {{id: M1, driver: modbus-tcp, host: 127.0.0.1, port: {port}, poll_interval: 200ms,
     timeout: 300ms, retries: 1, max_backoff: 1s, points: [{{name: v, address: 0}}]}}
rules:
  - {{id: offline, devices: [M1], when: {{comm_loss: true}}, for: 1500ms,
     category: device_offline, priority: P2, message: {{zh: x, en: x}}}}
""")
    clock = SystemClock()
    bus = Bus()
    feed, seen = bus.subscribe("alarms"), bus.subscribe("test", maxsize=10_000)
    raised: list[Detection] = []

    async def sink(d: Detection) -> None:
        raised.append(d)

    link = ModbusLink(config.devices, clock)  # type: ignore[arg-type]
    rules = RuleEvaluator(config, clock, sink)
    server = SimModbusServer([unit], port=port)
    readings: list[Reading] = []
    await server.__aenter__()
    try:
        async with _running(rules.run(feed), link.run(bus.publish)):
            async with asyncio.timeout(10):
                while not any(r.good for r in readings):
                    readings.append(await seen.get())
            if failure == "silent":
                unit.faults.silent = True
            else:
                await server.__aexit__(None, None, None)
            async with asyncio.timeout(10):
                while not raised:
                    readings.append(await seen.get())
            while (r := seen.get_nowait()) is not None:
                readings.append(r)
    finally:
        if failure == "silent":
            await server.__aexit__(None, None, None)
    last_good = max(r.received_ts for r in readings if r.good)
    first_loss = next(r for r in readings if r.quality is Quality.COMM_LOSS
                      and r.received_ts > last_good)
    assert first_loss.silent_since == pytest.approx(last_good, abs=0.25)
    (alarm,) = raised
    # Before, the alarm counted from the first comm-loss reading; now from the last answer
    # (within one poll interval and the time taken to read).
    assert alarm.condition_since == pytest.approx(last_good, abs=0.25)
    assert alarm.condition_since < first_loss.received_ts
    assert alarm.ts - alarm.condition_since == pytest.approx(1.5, abs=0.3)


# --------------------------------------------------------------------------- MQTT


@pytest.mark.mosquitto
async def test_mqtt_comm_loss_says_since_when_the_device_is_silent(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    """stale_after: silent since its last message. Broker lost: only since the broker went,
    so a door that rightly said nothing for hours is not 'silent for hours' at once."""
    doors = {**DOORS, "stale_after": "30s"}
    driver = only_driver(site_config(mosquitto.port, [doors, FIRE]), fake_clock)
    sink = Sink()
    door_msg = '{"status": {"door": "OPEN"}, "battery": [{"level": 900}]}'
    async with running(driver, sink):
        await publish(mosquitto.port, ("sunny/door/1/state", door_msg),
                      ("sunny/door/2/state", door_msg))
        await sink.wait_for(lambda r: r.good, count=4)
        spoke = fake_clock.time()
        await fake_clock.advance(20)
        await publish(mosquitto.port, ("sunny/door/2/state", door_msg))
        await sink.wait_for(lambda r: r.good, count=6)
        await fake_clock.advance(10)
        (stale, _) = await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=2)
        assert (stale.device, stale.received_ts - spoke) == ("door-1", 30.0)
        assert stale.silent_since == spoke
        # The fire panel (no stale_after) has said nothing for an hour when the broker goes.
        await fake_clock.advance(3600)
        await asyncio.to_thread(mosquitto.stop)
        (lost,) = await sink.wait_for(lambda r: r.device == "fire-panel"
                                      and r.quality is Quality.COMM_LOSS)
        assert lost.silent_since == lost.received_ts == fake_clock.time()
