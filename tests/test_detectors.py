"""The bundled detector packs, driven by readings through the whole alarm stage on the fake clock.

Readings enter through the bus exactly as the drivers put them there; what comes out is what the
work-order desk and the upstream would receive (announced AlarmEvents), after the ISA-18.2
lifecycle (suppression by design included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.alarms import AlarmEngine, AlarmEvent, AlarmState
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.model import Quality, Reading, Value

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
brokers: {local: {host: 127.0.0.1}}
devices:
  - {id: E1, name: 1号梯, driver: modbus-tcp, host: h, profile: elevator-modbus, location: {building: "1"}}
  - {id: "{panel}-zone-{zone}", driver: mqtt, profile: fire-panel-zone-mqtt, location: {zone: "{zone}"}}
  - {id: "{panel}", driver: mqtt, profile: fire-panel-mqtt}
  - {id: door-D1, driver: mqtt, profile: access-door-mqtt, topic_vars: {door: D1}, location: {zone: "3"}}
  - {id: door-D9, driver: mqtt, profile: access-door-mqtt, topic_vars: {door: D9}, location: {zone: "1"}}
  - {id: M1, driver: modbus-tcp, host: h, unit: 2, profile: eastron-sdm630, location: {zone: feeder-A}}
  - {id: W1, driver: modbus-tcp, host: h, unit: 3, profile: water-meter-modbus}
detectors: [elevator, fire, access, energy]
"""

NORMAL_CAR: dict[str, Value] = {
    "car_status": 1, "car_direction": 1, "door_zone": 2, "car_position": 5, "door_status": 1,
    "passenger_status": 1, "service_mode": 1, "power_status": 1, "alarm_button": 0,
    "up_limit": False, "down_limit": False}
NORMAL_METER: dict[str, Value] = {
    "voltage_l1": 220.0, "voltage_l2": 221.0, "voltage_l3": 219.5, "current_l1": 40.0,
    "current_l2": 38.0, "current_l3": 41.0, "power_total": 26_000.0}


class Site:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")
        self.announced: list[AlarmEvent] = []

        async def sink(event: AlarmEvent) -> None:
            self.announced.append(event)

        self.engine = AlarmEngine(load_config_text(SITE), clock, sink)

    async def send(self, device: str, values: dict[str, Value],
                   quality: Quality = Quality.GOOD) -> None:
        for point, value in values.items():
            good = quality is Quality.GOOD
            await self.bus.publish(Reading(device, point, value if good else None, quality,
                                           self.clock.time()))
        await self.clock.advance(0)

    async def poll(self, device: str, values: dict[str, Value], seconds: float,
                   every: float = 1.0) -> None:
        """A device answering with the same values every ``every`` s for ``seconds``."""
        for _ in range(round(seconds / every)):
            await self.send(device, values)
            await self.clock.advance(every)

    def active(self, rule: str | None = None, *, device: str | None = None) -> list[AlarmEvent]:
        return [e for e in self.announced if e.state is AlarmState.ACTIVE
                and (rule is None or e.rule_id == rule)
                and (device is None or e.device in (device, "zone:feeder-A"))]


@pytest.fixture
async def site(fake_clock: FakeClock) -> AsyncIterator[Site]:
    s = Site(fake_clock)
    task = asyncio.create_task(s.engine.run(s.feed))
    await fake_clock.advance(0)
    # Every device answers once, so nothing is stale at the start of a test.
    await s.send("E1", {**NORMAL_CAR, "car_status": 0, "door_zone": 1, "passenger_status": 2})
    await s.send("M1", NORMAL_METER)
    await s.send("W1", {"flow_rate": 0.0, "total_volume": 10.0})
    for door in ("door-D1", "door-D9"):
        await s.send(door, {"open": False, "locked": True, "tamper": False, "forced": False,
                            "fire_release": False})
    yield s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------- elevator


async def test_trapped_between_floors_after_30_s_only(site: Site) -> None:
    trapped = {**NORMAL_CAR, "car_status": 0, "door_zone": 2, "door_status": 1}
    await site.poll("E1", trapped, 29)
    assert site.active() == []
    await site.poll("E1", trapped, 2)
    (event,) = site.active("elevator.trapped-between-floors")
    assert (event.priority, event.category, event.device) == ("P0", "elevator_entrapment", "E1")
    assert "1号梯" in event.message_zh


async def test_car_at_a_floor_with_doors_open_is_not_trapped(site: Site) -> None:
    await site.poll("E1", {**NORMAL_CAR, "car_status": 0, "door_zone": 1, "door_status": 2},
                    100)
    assert [e for e in site.active() if e.category == "elevator_entrapment"] == []


async def test_inspection_suppresses_entrapment_but_not_the_alarm_button(site: Site) -> None:
    stuck = {**NORMAL_CAR, "car_status": 0, "door_zone": 2, "service_mode": 2}
    await site.poll("E1", stuck, 120)
    # (The site's doors and panel, silent meanwhile, are offline by now: not this test's topic.)
    assert site.active(device="E1") == [], "inspection: a technician is in charge of the car"
    await site.send("E1", {**stuck, "alarm_button": 1})
    (event,) = site.active(device="E1")
    assert (event.rule_id, event.priority) == ("elevator.alarm-button-outside-zone", "P0")


async def test_unintended_car_movement_and_power_loss_with_a_passenger(site: Site) -> None:
    await site.poll("E1", {**NORMAL_CAR, "door_status": 2, "door_zone": 2}, 2)
    assert [e.rule_id for e in site.active()] == ["elevator.unintended-car-movement"]
    await site.send("E1", {**NORMAL_CAR, "car_status": 0, "door_zone": 1, "power_status": 2})
    assert site.active()[-1].rule_id == "elevator.power-lost-occupied"


async def test_a_silent_elevator_is_offline_not_normal_and_not_trapped(site: Site) -> None:
    await site.send("E1", {**NORMAL_CAR, "car_status": 0, "door_zone": 2})
    for _ in range(40):
        await site.send("E1", dict.fromkeys(NORMAL_CAR), Quality.COMM_LOSS)
        await site.clock.advance(1)
    assert [e.rule_id for e in site.active()] == ["elevator.offline"]


# --------------------------------------------------------------------------- fire and doors


async def test_fire_is_p0_at_once_and_reset_is_recorded_without_a_work_order(site: Site) -> None:
    await site.send("FACP-1-zone-3", {"fire": True, "prealarm": False, "start": False})
    (fire,) = site.active()
    assert (fire.rule_id, fire.priority, fire.device, fire.location.zone) == (
        "fire.fire", "P0", "FACP-1-zone-3", "3")
    await site.send("FACP-1", {"event": "reset"})
    reset = site.active("fire.operator-reset")
    assert len(reset) == 1 and reset[0].work_order is False


async def test_door_held_open_is_p2_but_suppressed_during_a_fire_in_its_zone(site: Site) -> None:
    await site.send("FACP-1-zone-3", {"fire": True})
    await site.poll("door-D1", {"open": True, "locked": False, "fire_release": True}, 70)
    await site.poll("door-D9", {"open": True, "locked": False}, 70)
    held = site.active("access.door-held-open")
    assert [e.device for e in held] == ["door-D9"], \
        "zone 3's door is held open by the evacuation; zone 1's is not"
    hidden = [e for e in site.engine.active() if e.alarm_id == "access.door-held-open@door-D1"]
    assert hidden, "a suppressed alarm is still evaluated and recorded"


async def test_door_still_locked_after_the_fire_release(site: Site) -> None:
    await site.poll("door-D1", {"open": False, "locked": True, "fire_release": True}, 12)
    (event,) = site.active()
    assert (event.rule_id, event.priority) == ("access.locked-after-fire-release", "P0")


async def test_forced_invalid_cards_and_duress(site: Site) -> None:
    await site.send("door-D9", {"forced": True})
    for _ in range(5):
        await site.send("door-D1", {"event": "card_invalid"})
        await site.clock.advance(5)
    await site.send("door-D1", {"event": "duress"})
    assert [(e.rule_id, e.priority) for e in site.active()] == [
        ("access.door-forced", "P1"), ("access.invalid-card-burst", "P2"),
        ("access.duress", "P0")]


# --------------------------------------------------------------------------- energy and water


async def test_a_meter_that_drops_off_the_bus_is_comm_loss_not_zero_volts(site: Site) -> None:
    for _ in range(70):
        await site.send("M1", dict.fromkeys(NORMAL_METER), Quality.COMM_LOSS)
        await site.clock.advance(1)
    assert [e.rule_id for e in site.active(device="M1")] == ["energy.feeder-silent",
                                                              "energy.offline"], \
        "no voltage, phase-loss or power-loss alarm from a meter that does not answer"


async def test_voltage_sag_phase_loss_and_overload(site: Site) -> None:
    await site.poll("M1", {**NORMAL_METER, "voltage_l1": 195.0, "voltage_l2": 196.0,
                           "voltage_l3": 195.5}, 12)
    assert [e.rule_id for e in site.active()] == ["energy.voltage-low"]
    await site.poll("M1", {**NORMAL_METER, "voltage_l2": 3.0}, 7)
    assert site.active()[-1].rule_id == "energy.phase-loss"
    await site.poll("M1", {**NORMAL_METER, "current_l1": 85.0}, 31)
    assert site.active()[-1].rule_id == "energy.overload-warning"
    await site.poll("M1", {**NORMAL_METER, "current_l1": 120.0}, 61)
    assert site.active()[-1].rule_id == "energy.overload-alarm"


async def test_water_leak_after_two_hours_of_non_zero_flow(site: Site) -> None:
    await site.poll("W1", {"flow_rate": 0.05}, 7190, every=10)
    assert site.active(device="W1") == []
    await site.poll("W1", {"flow_rate": 0.05}, 20, every=10)
    (leak,) = site.active(device="W1")
    assert (leak.rule_id, leak.priority) == ("energy.water-leak", "P1")


# --------------------------------------------------------------------------- the rest, one line each

STOPPED_AT_FLOOR = {**NORMAL_CAR, "car_status": 0, "door_zone": 1, "passenger_status": 2}


@pytest.mark.parametrize(("device", "values", "seconds", "rule", "priority"), [
    ("E1", {**NORMAL_CAR, "up_limit": True, "passenger_status": 2}, 1, "elevator.overtravel",
     "P1"),
    ("E1", {**NORMAL_CAR, "down_limit": True}, 1, "elevator.overtravel-occupied", "P0"),
    ("E1", {**STOPPED_AT_FLOOR, "door_status": 2}, 121, "elevator.door-open-too-long", "P2"),
    ("E1", {**NORMAL_CAR, "car_status": 0, "door_zone": 2, "passenger_status": 2}, 61,
     "elevator.stopped-outside-door-zone", "P1"),
    ("E1", {**STOPPED_AT_FLOOR, "passenger_status": 1, "door_open_request": 1}, 31,
     "elevator.trapped-at-floor", "P0"),
    ("E1", {**STOPPED_AT_FLOOR, "alarm_button": 1}, 11, "elevator.alarm-button-at-floor", "P0"),
    ("E1", {**STOPPED_AT_FLOOR, "power_status": 2}, 1, "elevator.power-lost", "P1"),
    ("E1", {**NORMAL_CAR, "door_zone": 1, "door_status": 2}, 2,
     "elevator.door-open-while-running", "P1"),
    ("FACP-1-zone-2", {"prealarm": True, "fire": False}, 1, "fire.prealarm", "P1"),
    ("FACP-1-zone-2", {"supervisory": True}, 1, "fire.supervisory", "P1"),
    ("FACP-1-zone-2", {"fault": True}, 1, "fire.zone-fault", "P2"),
    ("FACP-1-zone-2", {"start": True, "fire": False}, 11, "fire.start-without-fire", "P1"),
    ("FACP-1", {"bus_fault": True}, 1, "fire.bus-fault", "P1"),
    ("FACP-1", {"main_power_fault": True, "backup_power_fault": True}, 1,
     "fire.both-power-sources-lost", "P1"),
    ("FACP-1", {"main_power_fault": True, "backup_power_fault": False}, 1, "fire.power-fault",
     "P2"),
    ("door-D9", {"tamper": True}, 1, "access.tamper", "P1"),
    ("door-D9", {"event": "anti_passback"}, 1, "access.anti-passback", "P2"),
    ("M1", {**NORMAL_METER, "voltage_l3": 240.0}, 11, "energy.voltage-high", "P2"),
    ("M1", {**NORMAL_METER, "voltage_l1": 0.0, "voltage_l2": 0.0, "voltage_l3": 0.0}, 6,
     "energy.power-loss", "P1"),
])
async def test_each_detector_fires_with_its_priority(  # noqa: PLR0917  # pytest params
        site: Site, device: str, values: dict[str, Value], seconds: float, rule: str,
        priority: str) -> None:
    await site.poll(device, values, seconds)
    fired = {e.rule_id: e.priority for e in site.active()}
    assert fired.get(rule) == priority, fired


async def test_a_passenger_waiting_in_a_parked_car_is_not_trapped(site: Site) -> None:
    # Stopped at a floor, doors closed, someone inside, nobody asking for the doors: a person
    # waiting (or the end of the demo, after the technician freed E1), not an entrapment.
    parked = {**STOPPED_AT_FLOOR, "passenger_status": 1, "door_open_request": 0,
              "fault_code": 0}
    await site.poll("E1", parked, 600, every=2)
    assert site.active(device="E1") == []
    # The passenger presses door-open and healthy doors open at once: still nothing.
    await site.poll("E1", {**parked, "door_open_request": 1}, 1)
    await site.poll("E1", {**parked, "door_status": 2}, 5)
    assert site.active(device="E1") == []


@pytest.mark.parametrize("evidence", [{"door_open_request": 1}, {"fault_code": 3}])
async def test_doors_that_fail_to_open_trap_the_passenger_at_a_floor(
        site: Site, evidence: dict[str, Value]) -> None:
    shut_in = {**STOPPED_AT_FLOOR, "passenger_status": 1, "door_open_request": 0,
               "fault_code": 0, **evidence}
    await site.poll("E1", shut_in, 29)
    assert site.active(device="E1") == [], "30 s from the unserved request"
    await site.poll("E1", shut_in, 2)
    assert [(e.rule_id, e.priority) for e in site.active(device="E1")] == [
        ("elevator.trapped-at-floor", "P0")]


async def test_door_cycling_counts_within_one_stop(site: Site) -> None:
    for _ in range(4):  # four stops with one door cycle each: normal traffic
        await site.poll("E1", {**NORMAL_CAR, "car_status": 1}, 5)
        await site.poll("E1", {**STOPPED_AT_FLOOR, "door_status": 2}, 3)
        await site.poll("E1", STOPPED_AT_FLOOR, 3)
    assert site.active("elevator.repeated-door-cycling") == []
    for _ in range(5):  # five cycles at one floor
        await site.poll("E1", {**STOPPED_AT_FLOOR, "door_status": 2}, 3)
        await site.poll("E1", STOPPED_AT_FLOOR, 3)
    assert [e.priority for e in site.active("elevator.repeated-door-cycling")] == ["P2"]


async def test_disablement_is_reported_only_after_24_hours(site: Site) -> None:
    await site.send("FACP-1-zone-4", {"disabled": True})
    await site.clock.advance(23 * 3600)
    assert site.active("fire.disabled-too-long") == []
    await site.clock.advance(3601)
    assert [e.priority for e in site.active("fire.disabled-too-long")] == ["P3"]
