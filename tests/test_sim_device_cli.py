"""``propgw sim device``: RTU on a serial port, and one clear line for every wrong option."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient

from tests.commission_support import propgw, sim_device
from tests.support import free_port


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "/dev/pts/5"],
     "propgw sim: --port wants a TCP port number 1..65535, got '/dev/pts/5'; to serve Modbus "
     "RTU on a serial port, use --serial /dev/pts/5"),
    (["--port", "0"],
     "propgw sim: --port wants a TCP port number 1..65535, got 0 (the gateway config names a "
     "fixed port, so 0 = any free port is not offered)"),
    (["--serial", "/nonexistent/ttyV0"],
     "propgw sim: --serial /nonexistent/ttyV0: no such serial port (for a virtual line, start "
     "socat first; see docs/commissioning.md)"),
    (["--unit", "1", "--unit", "1"], "propgw sim: --unit ids must differ on one line, got [1, 1]"),
    (["--unit", "0"], "propgw sim: --unit wants a Modbus unit id 1..247, got '0'"),
    (["--unit", "1", "--unit", "2", "--id", "E1"],
     "propgw sim: 1 --id for 2 --unit: give one --id per --unit, or none"),
    (["--id", "bad id"], "propgw sim: id: String should match pattern "
                         "'^[A-Za-z0-9][A-Za-z0-9_.\\-]*$'"),
])
async def test_sim_device_wrong_options_give_one_line_and_exit_2(args: list[str],
                                                                  message: str) -> None:
    ran = await propgw("sim", "device", "elevator", *args)
    assert ran.rc == 2, ran
    assert ran.err == message + "\n", "one line: no usage dump, no pydantic URL, no traceback"


async def test_sim_device_serial_is_for_modbus_kinds(tmp_path: Path) -> None:
    tty = tmp_path / "tty"
    tty.touch()
    ran = await propgw("sim", "device", "fire_panel", "--serial", str(tty))
    assert ran.rc == 2
    assert ran.err.startswith("propgw sim: --serial serves Modbus RTU, but fire_panel is an "
                              "MQTT simulator")


async def test_sim_device_port_and_serial_together_are_refused(tmp_path: Path) -> None:
    tty = tmp_path / "tty"
    tty.touch()
    ran = await propgw("sim", "device", "elevator", "--serial", str(tty), "--port", "502")
    assert ran.rc == 2
    assert ran.err == ("propgw sim: give either --port (Modbus TCP) or --serial (Modbus RTU), "
                       "not both\n")


@pytest.mark.socat
async def test_sim_device_serves_modbus_rtu_on_a_pty(pty_pair: tuple[str, str]) -> None:
    gw, bus = pty_pair
    async with sim_device("elevator", "--serial", bus, "--baudrate", "19200", "--unit", "5",
                          "--option", "traffic=false", control_port=free_port()) as sim:
        assert sim.banner[0] == f"elevator E1: modbus-rtu:{bus} unit 5\n"
        client = AsyncModbusSerialClient(gw, baudrate=19200, timeout=1, retries=0)
        try:
            assert await client.connect()
            response = await client.read_holding_registers(6, count=1, device_id=5)
        finally:
            client.close()
    assert response.registers == [1], "service_mode normal, read as unit 5 over RTU"


@pytest.mark.socat
async def test_sim_device_settings_a_port_refuses_give_one_line(
        pty_pair: tuple[str, str]) -> None:
    _, bus = pty_pair
    ran = await propgw("sim", "device", "elevator", "--serial", bus, "--parity", "E",
                       "--control-port", "0")
    assert ran.rc == 2, ran
    assert ran.err == (f"propgw sim: the serial port {bus} refuses the settings 9600 8E1: "
                       "Invalid argument\n"), "a pty takes no parity"
