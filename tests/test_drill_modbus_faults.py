"""Drills: a Modbus device that answers garbage, one that goes silent, one that flaps, each on
the same TCP link as a healthy neighbour.

The devices are real pymodbus servers from ``simulators/`` with their fault injection; the
driver is the real one, and its log goes through the real log policy (``gateway.logs``). The
last drill runs ``propgw run`` as a subprocess and reads what it actually writes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.modbus import ModbusLink
from gateway.clock import SystemClock
from gateway.logs import LibraryLogFilter
from gateway.model import Quality
from simulators.modbus_server import Faults, SimModbusServer, SimUnit
from tests.drill_support import REPORT, STATUS_TOKEN, DrillRow, GatewayProcess, reasons
from tests.support import free_port, kill_if_running, stop_and_read
from tests.test_modbus_support import Collector, point, rtu_device, running, tcp_device

REPO = Path(__file__).resolve().parents[1]
#: A log line at ERROR or CRITICAL (the level is the column after the date and time).
_LEVEL = re.compile(r"^\S+ \S+ (?:ERROR|CRITICAL) ")
_NUMBERS = re.compile(r"\d+")
FAULTY, NEIGHBOUR = "faulty", "neighbour"

pytestmark = pytest.mark.drill


def _garbage(faults: Faults) -> None:
    faults.garbage = True


def _silent(faults: Faults) -> None:
    faults.silent = True


@pytest.fixture
def drill_log() -> Iterator[io.StringIO]:
    """What ``propgw run`` at INFO would write: our handler and its library filter on the root
    logger, pymodbus at WARNING."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(LibraryLogFilter(handler.handle))
    root, pymodbus = logging.getLogger(), logging.getLogger("pymodbus")
    levels = root.level, pymodbus.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    pymodbus.setLevel(logging.WARNING)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        pymodbus.setLevel(levels[1])


def _link(port: int) -> ModbusLink:
    faulty = tcp_device(FAULTY, port, [point("x", 0), point("y", 1)], unit=1,
                        poll_interval=0.05, timeout=0.2, max_backoff=1)
    neighbour = tcp_device(NEIGHBOUR, port, [point("v", 0)], unit=2, poll_interval=0.05,
                           timeout=0.2)
    return ModbusLink([faulty, neighbour], SystemClock())


def _units() -> tuple[SimUnit, SimUnit]:
    faulty, neighbour = SimUnit(1), SimUnit(2)
    faulty.set_registers("holding", 0, [11, 12])
    neighbour.set_registers("holding", 0, [42])
    return faulty, neighbour


def _good(sink: Collector, device: str) -> int:
    return sum(1 for r in sink.of(device) if r.quality is Quality.GOOD)


def _driver_lines(log: io.StringIO) -> list[str]:
    return [line for line in log.getvalue().splitlines() if "drivers.modbus" in line]


@pytest.mark.parametrize(("inject", "quality", "state"), [
    pytest.param(_garbage, Quality.BAD, "bad", id="garbage"),
    pytest.param(_silent, Quality.COMM_LOSS, "comm-loss", id="silent"),
])
async def test_a_faulty_device_fails_and_recovers_while_its_neighbour_is_polled(
        drill_log: io.StringIO, inject: Callable[[Faults], None], quality: Quality,
        state: str) -> None:
    port = free_port()
    faulty, neighbour = _units()
    sink = Collector()
    async with SimModbusServer([faulty, neighbour], port=port), running(_link(port), sink):
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], Quality.GOOD)
                            and sink.latest_all(NEIGHBOUR, ["v"], Quality.GOOD))
        inject(faulty.faults)
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], quality))
        before = _good(sink, NEIGHBOUR)
        # The fault goes on; the neighbour on the same connection keeps being read.
        await sink.wait_for(lambda: _good(sink, NEIGHBOUR) >= before + 5)
        assert sink.latest_all(FAULTY, ["x", "y"], quality), "the fault was not over yet"
        faulty.faults.clear()
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], Quality.GOOD))
    assert all(r.quality is Quality.GOOD for r in sink.of(NEIGHBOUR))
    text = drill_log.getvalue()
    lines = _driver_lines(drill_log)
    assert len(lines) == 2, text
    assert re.match(rf"WARNING .*device {FAULTY} is {state}: holding 0: ", lines[0]), text
    assert re.match(rf"INFO .*device {FAULTY} recovered", lines[1]), text
    assert "Traceback" not in text and ">>>>>" not in text and "link down" not in text, text
    assert len(text.splitlines()) <= 4, text


async def test_a_flapping_device_logs_one_line_per_transition(drill_log: io.StringIO) -> None:
    port = free_port()
    faulty, neighbour = _units()
    sink = Collector()
    cycles = 3
    async with SimModbusServer([faulty, neighbour], port=port), running(_link(port), sink):
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], Quality.GOOD))
        for _ in range(cycles):
            faulty.faults.silent = True
            await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], Quality.COMM_LOSS))
            faulty.faults.clear()
            await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x", "y"], Quality.GOOD))
    lines = _driver_lines(drill_log)
    expected = [f"WARNING .*device {FAULTY} is comm-loss: ",
                f"INFO .*device {FAULTY} recovered"] * cycles
    assert len(lines) == len(expected), drill_log.getvalue()
    for line, pattern in zip(lines, expected, strict=True):
        assert re.match(pattern, line), drill_log.getvalue()
    assert all(r.quality is Quality.GOOD for r in sink.of(NEIGHBOUR))
    assert "Traceback" not in drill_log.getvalue()


@pytest.mark.slow
async def test_propgw_run_through_garbage_silence_and_flapping_logs_little(
        tmp_path: Path) -> None:
    """Six seconds of three faulty devices and a healthy one on one link, as the real gateway
    process logs them: a bounded number of lines, one per transition, no traceback."""
    port = free_port()
    units = {name: SimUnit(unit) for unit, name in enumerate(
        ("garbage", "silent", "flapping", "healthy"), start=1)}
    for unit in units.values():
        unit.set_registers("holding", 0, [7, 8])
    devices = "\n".join(
        f"  - {{id: {name}, driver: modbus-tcp, host: 127.0.0.1, port: {port}, "
        f"unit: {unit.unit_id}, poll_interval: 0.2s, timeout: 0.3s, max_backoff: 1s, "
        f"points: [{{name: a, address: 0}}, {{name: b, address: 1}}]}}"
        for name, unit in units.items())
    config = tmp_path / "site.yaml"
    status_port = free_port()
    config.write_text(f"site: {{id: s, name: s, gateway_id: g}}\n"
                      # An HTTP upstream nobody listens on: nothing is ever sent to it.
                      f"upstream: {{http: {{url: 'http://127.0.0.1:{free_port()}/'}},\n"
                      f"  status_api: {{port: {status_port}, token: {STATUS_TOKEN}}}}}\n"
                      f"devices:\n{devices}\n")
    gw = GatewayProcess(config, status_port)
    seconds, flaps = 6.0, 0
    async with SimModbusServer(list(units.values()), port=port):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(config), "--log-level",
            "INFO", cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(15):
                while b"running" not in (line := await proc.stdout.readline()):
                    assert line, "propgw run ended before it ran"
            units["garbage"].faults.garbage = True
            units["silent"].faults.silent = True
            healthy_before = units["healthy"].requests[3]
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                units["flapping"].faults.silent = not units["flapping"].faults.silent
                flaps += 1
                await asyncio.sleep(1.0)
            healthy_during = units["healthy"].requests[3] - healthy_before
            health = await gw.wait_health(lambda h: "comm_loss" in reasons(h))
            named = next(r["message"] for r in health["reasons"] if r["code"] == "comm_loss")
            honest = "garbage" in named and "silent" in named and "healthy" not in named
            output, _ = await stop_and_read(proc)
        finally:
            await kill_if_running(proc)
    text = output.decode()
    REPORT.append(DrillRow("Modbus devices answering garbage, silent, flapping (one link, 6 s)",
                           tried=3, lost=None, duplicated=None, second_orders=None,
                           tracebacks=text.count("Traceback"), health_honest=honest))
    assert proc.returncode == 0, text
    assert honest, health
    for symptom in ("Traceback", ">>>>>", "link down"):
        assert symptom not in text, text
    # Nothing at ERROR or above. The level column is what counts: a pymodbus WARNING may
    # itself start "ERROR: received pdu without a corresponding request" when the flapping
    # device's late answer arrives after its timeout.
    assert not [line for line in text.splitlines() if _LEVEL.match(line)], text
    # 0.2 s polls for 6 s, less what the three faulty neighbours cost: still read steadily.
    assert healthy_during >= 10, (healthy_during, text)
    lines = text.splitlines()
    transitions = [line for line in lines if "drivers.modbus" in line]
    assert sum("device garbage is bad" in line for line in transitions) == 1, text
    assert sum("device silent is comm-loss" in line for line in transitions) == 1, text
    flapping = [line for line in transitions if "device flapping" in line]
    assert 2 <= len(flapping) <= flaps + 1, text
    assert not any("device healthy" in line for line in transitions), text
    # A library's complaint passes once per window, whatever its numbers; pymodbus has a
    # handful of different ones for garbage, silence and late answers.
    library = [_NUMBERS.sub("#", line.split(" ", 2)[2]) for line in lines
               if " pymodbus" in line or " asyncio" in line]
    assert len(library) == len(set(library)) <= 6, text
    assert len(lines) <= 8 + flaps + 1, text


@pytest.mark.socat
async def test_garbage_on_an_rs485_bus_spares_the_other_meters(
        pty_pair: tuple[str, str], drill_log: io.StringIO) -> None:
    gw, bus = pty_pair
    faulty, neighbour = _units()
    devices = [rtu_device(name, gw, [point("x", 0)], unit=unit.unit_id, baudrate=19200,
                          poll_interval=0.05, timeout=0.2, max_backoff=1)
               for name, unit in ((FAULTY, faulty), (NEIGHBOUR, neighbour))]
    sink = Collector()
    async with SimModbusServer([faulty, neighbour], serial_port=bus, baudrate=19200), \
            running(ModbusLink(devices, SystemClock()), sink):
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x"], Quality.GOOD))
        faulty.faults.garbage = True
        await sink.wait_for(lambda: not sink.latest_all(FAULTY, ["x"], Quality.GOOD))
        before = _good(sink, NEIGHBOUR)
        await sink.wait_for(lambda: _good(sink, NEIGHBOUR) >= before + 5)
        failed = sink.latest(FAULTY, "x")
        faulty.faults.clear()
        await sink.wait_for(lambda: sink.latest_all(FAULTY, ["x"], Quality.GOOD))
    # pymodbus's RTU framer finds no frame in it (undefined function code): no answer.
    assert failed is not None and failed.quality is Quality.COMM_LOSS
    assert all(r.quality is Quality.GOOD for r in sink.of(NEIGHBOUR))
    assert len(_driver_lines(drill_log)) == 2, drill_log.getvalue()
    assert "Traceback" not in drill_log.getvalue()
