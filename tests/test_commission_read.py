"""``propgw read``: one poll of one device through the real drivers, as a real subprocess.

Modbus over TCP (an in-process pymodbus simulator) and over RTU (``propgw sim device --serial``
on a socat pty pair, two elevators on one line), MQTT over a real mosquitto; the error cases
exit with the documented status and one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.commission import EXIT_BAD, EXIT_NO_ANSWER, EXIT_OK, EXIT_USAGE
from simulators.encoding import encode
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.commission_support import Ran, control, propgw, sim_device, write_site
from tests.support import Mosquitto, free_port

METER_POINTS = """\
    points:
      - {name: volts, address: 0, function: input, type: float32, word_order: little, unit: V}
      - {name: energy, address: 10, type: uint32, scale: 0.01, unit: kWh}
      - {name: state, address: 12, map: {0: ok, 1: alarm}}
      - {name: door_open, address: 13, type: bit, bit: 3}
      - {name: relay, address: 5, function: coil, type: bool}
"""


def _meter_unit() -> SimUnit:
    unit = SimUnit(1)
    unit.set_registers("input", 0, encode(229.5, "float32", word_order="little"))
    unit.set_registers("holding", 10, encode(1234567, "uint32"))
    unit.set_registers("holding", 12, [1])
    unit.set_registers("holding", 13, [0b1000])
    unit.set_bit("coil", 5, True)
    return unit


def _meter_site(tmp_path: Path, port: int, extra: str = "") -> Path:
    return write_site(tmp_path / "site.yaml",
                      f"  - id: M1\n    name: 1号表\n    driver: modbus-tcp\n    host: 127.0.0.1\n"
                      f"    port: {port}\n    timeout: 0.5s\n{extra}" + METER_POINTS)


async def test_read_modbus_tcp_shows_raw_registers_next_to_decoded_values(
        tmp_path: Path) -> None:
    port = free_port()
    site = _meter_site(tmp_path, port)
    async with SimModbusServer([_meter_unit()], port=port):
        ran = await propgw("read", "-c", str(site), "M1")
    assert ran.rc == EXIT_OK, ran
    rows = {line.split()[0]: line for line in ran.out.splitlines()[2:]}
    # Word order visible: the low word 0x8000 comes first on the wire, then 0x4365.
    assert "0x8000 0x4365 = 32768 17253" in rows["volts"] and " 229.5 " in rows["volts"]
    assert "words little" in rows["volts"] and rows["volts"].split()[-1] == "good"
    assert "0x0012 0xD687 = 18 54919" in rows["energy"] and "12345.7" in rows["energy"]
    assert "kWh" in rows["energy"]
    assert '"alarm"' in rows["state"] and "0x0001 = 1" in rows["state"]
    assert "(bit 3 = 1)" in rows["door_open"] and " true " in rows["door_open"]
    assert "coil 5" in rows["relay"] and " true " in rows["relay"]
    assert ran.out.splitlines()[0].startswith(f"M1 (1号表): modbus-tcp 127.0.0.1:{port} unit 1")


async def test_read_only_the_named_points(tmp_path: Path) -> None:
    port = free_port()
    site = _meter_site(tmp_path, port)
    async with SimModbusServer([_meter_unit()], port=port):
        ran = await propgw("read", "-c", str(site), "M1", "relay", "volts")
    assert ran.rc == EXIT_OK, ran
    names = [line.split()[0] for line in ran.out.splitlines()[2:]]
    assert names == ["volts", "relay"], "config order, only the points asked for"



DERIVED = """\
    derived:
      - {name: alarm_bit, from: state, map: {alarm: 1}, default: 0}
      - {name: kw_per_volt, expr: "energy / volts"}
"""


async def test_read_shows_derived_points_computed_from_the_poll(tmp_path: Path) -> None:
    port = free_port()
    site = write_site(tmp_path / "site.yaml",
                      f"  - id: M1\n    driver: modbus-tcp\n    host: 127.0.0.1\n"
                      f"    port: {port}\n    timeout: 0.5s\n" + METER_POINTS + DERIVED)
    async with SimModbusServer([_meter_unit()], port=port):
        every = await propgw("read", "-c", str(site), "M1")
        one = await propgw("read", "-c", str(site), "M1", "kw_per_volt")
    assert every.rc == EXIT_OK, every
    derived = every.out.split("\nDERIVED ", 1)[1].splitlines()
    rows = {line.split()[0]: line for line in derived[1:]}
    assert " 1 " in rows["alarm_bit"] and "state via map (1 entries, default 0)" in rows["alarm_bit"]
    assert "53.7938" in rows["kw_per_volt"] and rows["kw_per_volt"].split()[-1] == "good"
    # Asking for a derived point reads its inputs too, and shows them.
    assert one.rc == EXIT_OK, one
    polled = [line.split()[0] for line in one.out.split("\nDERIVED ")[0].splitlines()[2:]]
    assert polled == ["volts", "energy"]
    assert "kw_per_volt" in one.out.split("\nDERIVED ")[1] and "alarm_bit" not in one.out


async def test_read_a_device_answering_with_an_exception_exits_3(tmp_path: Path) -> None:
    port = free_port()
    site = _meter_site(tmp_path, port)
    unit = _meter_unit()
    unit.faults.exception = 2
    async with SimModbusServer([unit], port=port):
        ran = await propgw("read", "-c", str(site), "M1", "state")
    assert ran.rc == EXIT_BAD, ran
    assert "bad: holding 10: exception code 2 (illegal data address)" in ran.out
    assert "Traceback" not in ran.err


async def test_read_a_device_nobody_answers_for_exits_1_without_a_traceback(
        tmp_path: Path) -> None:
    site = _meter_site(tmp_path, free_port())  # nothing listens there
    ran = await propgw("read", "-c", str(site), "M1")
    assert ran.rc == EXIT_NO_ANSWER, ran
    assert "comm-loss" in ran.out and "cannot connect" in ran.out
    assert ran.err == "", "the reason is in the table; no log lines, no traceback"


async def test_read_a_silent_unit_times_out_within_its_deadline(tmp_path: Path) -> None:
    port = free_port()
    site = _meter_site(tmp_path, port)
    unit = _meter_unit()
    unit.faults.silent = True
    async with SimModbusServer([unit], port=port):
        started = time.monotonic()
        ran = await propgw("read", "-c", str(site), "M1", "volts")
        took = time.monotonic() - started
    assert ran.rc == EXIT_NO_ANSWER, ran
    # The reason is the device's first read this cycle (the coils), as the gateway records it.
    assert "comm-loss: coil 5: no answer within 0.5s" in ran.out
    assert took < 15, "a 0.5 s timeout must not hang the command"


async def test_read_unknown_device_or_point_lists_the_valid_ones(tmp_path: Path) -> None:
    site = _meter_site(tmp_path, free_port())
    ran = await propgw("read", "-c", str(site), "M2")
    assert ran.rc == EXIT_USAGE
    assert ran.err.strip() == "propgw read: no device 'M2' (did you mean 'M1'?); devices: " \
                              "M1 [modbus-tcp]"
    ran = await propgw("read", "-c", str(site), "M1", "volt", "relay")
    assert ran.rc == EXIT_USAGE
    assert ran.err.strip() == ("propgw read: device M1 has no point 'volt' (did you mean "
                               "'volts'?); its points: volts, energy, state, door_open, relay")
    assert ran.out == ""


async def test_read_a_bad_config_exits_2_with_the_config_errors(tmp_path: Path) -> None:
    site = write_site(tmp_path / "bad.yaml", "  - {id: M1, driver: modbus-tcp}\n")
    ran = await propgw("read", "-c", str(site), "M1")
    assert ran.rc == EXIT_USAGE
    assert "host" in ran.err and "Traceback" not in ran.err


@pytest.mark.socat
@pytest.mark.slow
async def test_read_two_elevators_on_one_rtu_line(pty_pair: tuple[str, str],
                                                  tmp_path: Path) -> None:
    """``sim device --serial`` serves two units on one pty; each reads its own registers."""
    gw, bus = pty_pair
    site = write_site(tmp_path / "rtu.yaml", "".join(
        f"  - {{id: E{u}, driver: modbus-rtu, port: {gw}, baudrate: 19200, unit: {u}, "
        f"profile: elevator-modbus, timeout: 0.5s}}\n" for u in (1, 2, 3)))
    async with sim_device("elevator", "--serial", bus, "--baudrate", "19200", "--unit", "1",
                          "--unit", "2", "--option", "traffic=false",
                          control_port=free_port()) as sim:
        assert f"elevator E2: modbus-rtu:{bus} unit 2\n" in sim.banner
        assert f"Modbus RTU line: {bus} 19200 8N1\n" in sim.banner
        await control(sim.control_port, "E2", "mode", mode="inspection")
        e1 = await propgw("read", "-c", str(site), "E1", "service_mode", "car_speed")
        e2 = await propgw("read", "-c", str(site), "E2", "service_mode")
        e3 = await propgw("read", "-c", str(site), "E3", "service_mode")
    assert e1.rc == EXIT_OK, e1
    assert e1.out.splitlines()[0] == f"E1: modbus-rtu {gw} 19200 8N1 unit 1, timeout 0.5s, " \
                                     "retries 0"
    assert _row(e1.out, "service_mode")[1:5] == ["holding", "6", "uint16", "0x0001"], "normal"
    assert e2.rc == EXIT_OK, e2
    assert _row(e2.out, "service_mode")[1:8] == ["holding", "6", "uint16", "0x0002", "=", "2",
                                                 "2"], "E2 alone was put in inspection"
    assert e3.rc == EXIT_NO_ANSWER, "no unit 3 on the line"
    assert "comm-loss: holding 0: no answer within 0.5s" in e3.out


def _row(out: str, point: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [point])


MQTT_DEVICE = """\
  - id: "door-{door}"
    driver: mqtt
    points:
      - {name: open, topic: "acs/{door}/state", path: door.open, type: bool}
      - {name: battery, topic: "acs/{door}/state", path: battery_mv, scale: 0.001, unit: V}
      - {name: card, topic: "acs/{door}/event", path: card}
"""


def _mqtt_site(tmp_path: Path, broker_port: int) -> Path:
    return write_site(tmp_path / "mqtt.yaml", MQTT_DEVICE,
                      brokers=f"brokers:\n  local: {{host: 127.0.0.1, port: {broker_port}}}\n")


@pytest.mark.mosquitto
async def test_read_mqtt_shows_the_payload_and_each_point_decoded_from_it(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = _mqtt_site(tmp_path, mosquitto.port)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish("acs/D7/state", json.dumps(
            {"door": {"open": True}, "battery_mv": 3012}), qos=1, retain=True)
        await client.publish("acs/D8/state", json.dumps({"door": {"open": False}}),
                             qos=1, retain=True)
    ran = await propgw("read", "-c", str(site), "door-D7", "open", "battery", "--timeout", "3")
    assert ran.rc == EXIT_OK, ran
    lines = ran.out.splitlines()
    assert lines[0] == "door-D7 (config device door-{door}): mqtt"
    assert "door-D7: message on acs/D7/state (44 bytes, retained):" in lines
    assert '  {"door": {"open": true}, "battery_mv": 3012}' in lines
    assert any(line.split()[:2] == ["open", "path"] and " true " in line for line in lines)
    assert any(line.split()[:1] == ["battery"] and "3.012" in line and " V " in line
               for line in lines)
    assert "acs/D8" not in ran.out, "only the device asked for"


@pytest.mark.mosquitto
async def test_read_mqtt_malformed_payload_exits_3(tmp_path: Path,
                                                   mosquitto: Mosquitto) -> None:
    site = _mqtt_site(tmp_path, mosquitto.port)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish("acs/D7/state", b"not json", qos=1, retain=True)
    ran = await propgw("read", "-c", str(site), "door-D7", "open", "--timeout", "3")
    assert ran.rc == EXIT_BAD, ran
    assert "  not json" in ran.out.splitlines()
    assert "bad: payload is not JSON" in ran.out


@pytest.mark.mosquitto
async def test_read_mqtt_silent_device_exits_1_after_the_timeout(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = _mqtt_site(tmp_path, mosquitto.port)
    started = time.monotonic()
    ran = await propgw("read", "-c", str(site), "door-D7", "--timeout", "1")
    assert ran.rc == EXIT_NO_ANSWER, ran
    assert time.monotonic() - started < 15
    assert ran.out.splitlines()[-1] == "no message within 1s (the device sent nothing)"


async def test_read_mqtt_broker_down_exits_1_and_says_why(tmp_path: Path) -> None:
    site = _mqtt_site(tmp_path, free_port())
    ran = await propgw("read", "-c", str(site), "door-D7", "--timeout", "1")
    assert ran.rc == EXIT_NO_ANSWER, ran
    assert "no message within 1s (broker local unreachable:" in ran.out
    assert "Traceback" not in ran.err


async def _read_panel_zone(site: Path, port: int, device: str,
                           zones: list[tuple[int, str]]) -> Ran:
    """``propgw read DEVICE`` while a panel publishes ``(zone, event)`` messages on
    ``fire/FACP-1/events`` every 0.1 s (bounded: 6 s), until the reader has subscribed."""
    async def publish_later() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            for _ in range(60):
                await asyncio.sleep(0.1)
                for zone, event in zones:
                    await client.publish("fire/FACP-1/events",
                                         json.dumps({"zone": zone, "event": event}), qos=1)

    async with asyncio.TaskGroup() as tg:
        publisher = tg.create_task(publish_later())
        ran = await propgw("read", "-c", str(site), device, "--timeout", "5")
        publisher.cancel()
    return ran


@pytest.mark.mosquitto
async def test_read_a_zone_of_a_panel_split_by_a_payload_field(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = write_site(tmp_path / "split.yaml", """\
  - id: "panel-zone-{zone}"
    driver: mqtt
    split_by: {zone: zone}
    points:
      - {name: event, topic: "fire/FACP-1/events", path: event, type: string}
""", brokers=f"brokers:\n  local: {{host: 127.0.0.1, port: {mosquitto.port}}}\n")
    ran = await _read_panel_zone(site, mosquitto.port, "panel-zone-3",
                                 [(2, "FAULT"), (3, "FIRE")])
    assert ran.rc == EXIT_OK, ran
    lines = ran.out.splitlines()
    assert lines[0] == "panel-zone-3 (config device panel-zone-{zone}): mqtt"
    assert any(line.split()[:1] == ["event"] and "FIRE" in line for line in lines), ran.out
    assert "FAULT" not in ran.out, "zone 2's messages are not zone 3's"


@pytest.mark.mosquitto
async def test_read_a_panel_zone_chosen_by_select_shows_only_its_messages(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = write_site(tmp_path / "select.yaml", """\
  - id: FACP-1-Z3
    name: B2 5F east stairs
    driver: mqtt
    select: {zone: 3}
    points:
      - {name: event, topic: "fire/FACP-1/events", path: event, type: string}
  - id: FACP-1-Z4
    driver: mqtt
    select: {zone: 4}
    points:
      - {name: event, topic: "fire/FACP-1/events", path: event, type: string}
""", brokers=f"brokers:\n  local: {{host: 127.0.0.1, port: {mosquitto.port}}}\n")
    ran = await _read_panel_zone(site, mosquitto.port, "FACP-1-Z3",
                                 [(4, "FAULT"), (7, "TEST"), (3, "FIRE")])
    assert ran.rc == EXIT_OK, ran
    assert any(line.split()[:1] == ["event"] and "FIRE" in line
               for line in ran.out.splitlines()), ran.out
    assert "FAULT" not in ran.out and "TEST" not in ran.out, "other zones' messages"
