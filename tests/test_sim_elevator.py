"""The elevator simulator through the gateway's own Modbus driver, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from drivers.modbus import ModbusLink, build_modbus_links
from gateway.clock import SystemClock
from gateway.config import load_config_text
from gateway.model import Quality, Reading
from simulators.base import ActionError
from simulators.elevator import REGISTER_MAP, STATUS_BITS, ElevatorSim, ServiceMode
from simulators.modbus_server import SimModbusServer
from tests.support import free_port

PROFILE = Path(__file__).resolve().parents[1] / "config" / "profiles" / "elevator-modbus.yaml"


def test_register_map_and_profile_agree() -> None:
    profile = {p["name"]: p for p in yaml.safe_load(PROFILE.read_text())["points"]}
    for name, (address, type_name, _) in REGISTER_MAP.items():
        if name == "status_bits":
            continue
        assert (profile[name]["address"], profile[name]["type"]) == (address, type_name), name
    for name, bit in STATUS_BITS.items():
        point = profile[name]
        assert (point["address"], point["type"], point["bit"]) == (
            REGISTER_MAP["status_bits"][0], "bit", bit)
    assert set(profile) == (set(REGISTER_MAP) - {"status_bits"}) | set(STATUS_BITS)


def elevator_link(port: int, *, timeout: float, poll_interval: float) -> ModbusLink:
    """The gateway's link to one elevator-modbus device on 127.0.0.1:port."""
    config = load_config_text(f"""
site: {{id: s, name: s, gateway_id: g}}
devices:
  - {{id: E1, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 1,
     profile: elevator-modbus, timeout: {timeout}, poll_interval: {poll_interval}}}
""")
    (link,) = build_modbus_links(config.devices, SystemClock())
    return link


async def read_all(sim: ElevatorSim) -> dict[str, Reading]:
    """One poll of every profile point through a real ModbusLink."""
    async with SimModbusServer([sim.unit], port=free_port()) as server:
        link = elevator_link(server.port, timeout=0.5, poll_interval=10)
        seen: dict[str, Reading] = {}
        done = asyncio.Event()
        expected = len(yaml.safe_load(PROFILE.read_text())["points"])

        async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
            for reading in readings:
                seen[reading.point] = reading
                if len(seen) == expected:
                    done.set()

        task = asyncio.create_task(link.run(sink))
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return seen


async def test_every_profile_point_decodes_to_the_simulated_value() -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.model.position = 7.5
    sim.model.target = 12
    sim.model.occupied = True
    sim.model.run_count = 123_456
    sim.model.fault_code = 4
    sim.model.door_request = True
    sim.apply("press_alarm", {})
    sim.apply("mode", {"mode": "fire_recall"})
    sim.refresh()
    readings = await read_all(sim)
    assert all(r.quality is Quality.GOOD for r in readings.values())
    values = {name: r.value for name, r in readings.items()}
    assert values == {
        "car_status": 1, "car_direction": 1, "door_zone": 2, "car_position": 8,
        "door_status": 1, "passenger_status": 1, "service_mode": int(ServiceMode.FIRE_RECALL),
        "power_status": 1, "alarm_button": 1, "up_limit": False, "down_limit": False,
        "safety_circuit_open": False, "door_lock_open": False, "fault_code": 4,
        "event_code": 44, "car_speed": pytest.approx(1.5), "run_count": 123_456,
        "door_open_request": 1,
    }


async def test_stop_between_floors_and_limits_show_on_the_wire() -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.model.position = 3.0
    sim.apply("board", {})
    sim.apply("stop_between_floors", {})
    readings = await read_all(sim)
    values = {name: r.value for name, r in readings.items()}
    assert (values["car_status"], values["door_zone"], values["door_status"],
            values["passenger_status"], values["fault_code"],
            values["safety_circuit_open"]) == (0, 2, 1, 1, 4, True)
    sim.model.position = sim.model.highest + 0.5  # overtravel at the top
    sim.refresh()
    readings = await read_all(sim)
    assert readings["up_limit"].value is True and readings["down_limit"].value is False


@pytest.mark.parametrize(("action", "params", "quality", "error"), [
    ("silent", {}, Quality.COMM_LOSS, None),
    ("exception", {"code": 6}, Quality.BAD, "6"),
    ("corrupt", {}, None, None),
])
async def test_fault_injection_reaches_the_gateway_as_quality(
        action: str, params: dict[str, object], quality: Quality | None, error: str | None) -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.apply(action, params)
    async with SimModbusServer([sim.unit], port=free_port()) as server:
        link = elevator_link(server.port, timeout=0.3, poll_interval=0.1)
        bad: list[Reading] = []
        good_again = asyncio.Event()

        async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
            for reading in readings:
                take(reading)

        def take(reading: Reading) -> None:
            if reading.quality is not Quality.GOOD:
                bad.append(reading)
            elif bad:
                good_again.set()

        task = asyncio.create_task(link.run(sink))
        try:
            async with asyncio.timeout(5):
                while not bad:
                    await asyncio.sleep(0.01)
            sim.apply("clear_faults", {})
            await asyncio.wait_for(good_again.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    first = bad[0]
    assert first.value is None
    if quality is not None:
        assert first.quality is quality
    else:
        assert first.quality in (Quality.BAD, Quality.COMM_LOSS)
    if error is not None:
        assert first.error is not None and error in first.error


def _run(sim: ElevatorSim, seconds: float, tick: float = 0.1) -> None:
    for _ in range(round(seconds / tick)):
        sim.model.step(tick)
    sim.refresh()


def _reg(sim: ElevatorSim, name: str) -> int:
    return sim.unit.holding[REGISTER_MAP[name][0]]


def test_a_passenger_waiting_in_a_parked_car_asks_nothing_until_door_open_is_pressed() -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.apply("board", {})
    _run(sim, 120)
    assert (_reg(sim, "door_status"), _reg(sim, "door_open_request")) == (1, 0)
    assert sim.apply("press_door_open", {}) == "E1: door-open button pressed"
    _run(sim, 0.5)
    assert (_reg(sim, "door_status"), _reg(sim, "door_open_request")) == (2, 0), \
        "healthy doors serve the request at once"


def test_a_door_fault_leaves_the_request_unserved_and_reports_fault_03() -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.apply("board", {})
    sim.apply("door_fault", {})
    assert sim.apply("press_door_open", {}).endswith("the doors do not open")
    _run(sim, 5)
    assert (_reg(sim, "door_status"), _reg(sim, "door_open_request"),
            _reg(sim, "fault_code")) == (1, 1, 0)
    _run(sim, 6)  # past the controller's 10 s door-open limit
    assert (_reg(sim, "door_status"), _reg(sim, "fault_code")) == (1, 3)
    sim.apply("recover", {})
    _run(sim, 0.5)
    assert (_reg(sim, "door_status"), _reg(sim, "door_open_request"),
            _reg(sim, "fault_code")) == (2, 0, 0), "the technician mends the doors; they open"


def test_a_called_car_with_broken_doors_stays_shut_at_the_floor() -> None:
    sim = ElevatorSim("E1", traffic=False)
    sim.apply("door_fault", {})
    sim.apply("call", {"floor": 3})
    _run(sim, 20)
    assert (_reg(sim, "car_position"), _reg(sim, "car_status"), _reg(sim, "door_status"),
            _reg(sim, "door_open_request"), _reg(sim, "fault_code")) == (3, 0, 1, 1, 3)
    sim.apply("stop_between_floors", {})
    assert sim.apply("press_door_open", {}).endswith("outside a floor's door zone")


def test_unknown_actions_and_bad_parameters_are_explained() -> None:
    sim = ElevatorSim("E1")
    with pytest.raises(ActionError, match="no action 'fly'"):
        sim.apply("fly", {})
    with pytest.raises(ActionError, match="mode must be one of"):
        sim.apply("mode", {"mode": "party"})
    with pytest.raises(ActionError, match="'floor' must be an integer"):
        sim.apply("call", {"floor": "roof"})


@pytest.mark.socat
async def test_eight_elevators_on_one_rtu_line(pty_pair: tuple[str, str]) -> None:
    """Eight elevator terminals on one RS-485 line (a pty pair), polled by one RTU link."""
    gw_end, bus_end = pty_pair
    sims = [ElevatorSim(f"E{u}", unit_id=u, traffic=False) for u in range(1, 9)]
    for sim in sims:
        sim.model.position = float(sim.unit.unit_id + 2)
        sim.refresh()
    devices = "\n".join(
        f"  - {{id: E{u}, driver: modbus-rtu, port: {gw_end}, baudrate: 19200, unit: {u}, "
        f"profile: elevator-modbus, timeout: 0.5, poll_interval: 10}}" for u in range(1, 9))
    config = load_config_text(f"site: {{id: s, name: s, gateway_id: g}}\ndevices:\n{devices}\n")
    (link,) = build_modbus_links(config.devices, SystemClock())
    positions: dict[str, object] = {}
    done = asyncio.Event()

    async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        for reading in readings:
            take(reading)

    def take(reading: Reading) -> None:
        assert reading.quality is Quality.GOOD, reading
        if reading.point == "car_position":
            positions[reading.device] = reading.value
            if len(positions) == 8:
                done.set()

    async with SimModbusServer([s.unit for s in sims], serial_port=bus_end, baudrate=19200):
        task = asyncio.create_task(link.run(sink))
        try:
            await asyncio.wait_for(done.wait(), 15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert positions == {f"E{u}": u + 2 for u in range(1, 9)}
