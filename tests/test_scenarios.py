"""Scenario files, the scenario runner against a real gateway, the sim CLI and control API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.simrun import run_scenario
from simulators.control import ControlServer
from simulators.elevator import ElevatorSim
from simulators.scenario import ScenarioError, library, load_scenario
from tests.scenario_play import Play, Played, play_apart
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]


def test_every_library_scenario_loads_and_is_documented() -> None:
    readme = (REPO / "simulators" / "README.md").read_text()
    assert library(), "the scenario library is empty"
    for name in library():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert f"`{name}`" in readme, f"{name} is not listed in simulators/README.md"


def test_bad_scenarios_are_explained(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndescription: d\ndevices: [{id: E1, kind: elevator}]\n"
                   "timeline: [{at: 5s, elevator: E9, do: board}]\n")
    with pytest.raises(ScenarioError, match="unknown device 'E9'"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such file or library scenario"):
        load_scenario("no-such-scenario")
    late = tmp_path / "late.yaml"
    late.write_text("name: x\ndescription: d\nduration: 30s\ndevices: [{id: E1, kind: elevator}]\n"
                    "platform: [{at: 40s, rule: r, device: E1, status: resolved}]\n")
    with pytest.raises(ScenarioError, match="platform\\[0\\]: at 40s is after the scenario's "
                                            "duration 30s"):
        load_scenario(late)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: x\ndescription: d\ndevices: [{id: E1, kind: elevator}]\n"
                       "platform: [{at: 4s, rule: r, device: E1, status: fixed}]\n")
    with pytest.raises(ScenarioError, match="status"):
        load_scenario(unknown)


async def test_entrapment_scenario_passes_against_the_gateway() -> None:
    lines: list[str] = []
    result = await run_scenario(load_scenario("elevator-trapped-between-floors"), speed=25,
                                on_line=lines.append)
    assert result.passed, result.failures
    (t, event), = [(t, e) for t, e in result.alarms if e.state.value == "active"
                   and e.rule_id == "elevator.trapped-between-floors"]
    assert event.device == "E1" and event.priority == "P0"
    assert 35 <= t <= 40, f"entrapment confirmed at {t:.1f}s; trap at 5s + 30s on-delay"
    assert any("stopped between floors" in line for line in lines)


async def test_an_unmet_expectation_fails_the_scenario(tmp_path: Path) -> None:
    text = (library()["elevator-trapped-between-floors"]).read_text()
    file = tmp_path / "wrong.yaml"
    file.write_text(text.replace("within: 40s", "within: 20s"))
    result = await run_scenario(load_scenario(file), speed=25)
    assert not result.passed
    assert "later than 20s" in result.failures[0]


async def test_control_api_drives_a_simulator() -> None:
    sim = ElevatorSim("E1", traffic=False)
    async with ControlServer({"E1": sim}) as control:
        async def request(raw: str) -> tuple[int, dict[str, object]]:
            reader, writer = await asyncio.open_connection(control.host, control.port)
            writer.write(raw.encode())
            await writer.drain()
            response = await reader.read()
            writer.close()
            head, _, body = response.partition(b"\r\n\r\n")
            return int(head.split()[1]), json.loads(body)

        body = '{"mode": "inspection"}'
        status, answer = await request(f"POST /devices/E1/mode HTTP/1.1\r\nContent-Length: "
                                       f"{len(body)}\r\n\r\n{body}")
        assert (status, answer) == (200, {"result": "E1: service mode inspection"})
        assert sim.snapshot()["mode"] == "inspection"
        status, answer = await request("POST /devices/E1/fly HTTP/1.1\r\n\r\n")
        assert status == 400 and "no action 'fly'" in str(answer["error"])
        status, answer = await request("GET / HTTP/1.1\r\n\r\n")
        devices = answer["devices"]
        assert isinstance(devices, dict) and devices["E1"]["state"]["mode"] == "inspection"


def test_sim_cli_lists_kinds_actions_and_scenarios() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "sim", "list"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "stop_between_floors" in result.stdout
    assert "elevator-trapped-between-floors" in result.stdout


@pytest.mark.slow
def test_sim_cli_runs_a_scenario_and_reports_the_verdict() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "sim", "run",
                             "elevator-trapped-between-floors", "--speed", "25"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALARM P0 elevator_entrapment on E1" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("PASS")


async def test_sim_device_serves_modbus_and_the_control_api(tmp_path: Path) -> None:
    port, control = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "device", "elevator", "--port", str(port),
        "--control-port", str(control), "--option", "traffic=false", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            banner = (await proc.stdout.readline()).decode()
        assert f"modbus-tcp://127.0.0.1:{port} unit 1" in banner
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        await client.connect()
        reader, writer = await asyncio.open_connection("127.0.0.1", control)
        body = b'{"state": "cut"}'
        writer.write(b"POST /devices/E1/power HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        await reader.read()
        writer.close()
        response = await client.read_holding_registers(7, count=1, device_id=1)
        client.close()
        assert response.registers == [2], "power_status must read 2 (cut) after the command"
    finally:
        proc.terminate()
        await proc.wait()


#: Library scenarios played at once, each in its own process. Each waits on its accelerated
#: clock nearly all the time (all 22 cost ~8 s of CPU over ~90 s played one after another).
PLAYED_AT_ONCE = 6


@pytest.fixture(scope="module")
def library_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    ) -> dict[str, Played | BaseException]:
    """The selected library scenarios played end to end, each against its own real
    mosquitto, a few at once (longest first): the module waits about as long as its longest
    scenario."""
    selected = {str(item.callspec.params["name"]) for item in request.session.items
                if isinstance(item, pytest.Function)
                and item.originalname == "test_library_scenario_holds_end_to_end"}
    names = sorted(selected, key=lambda n: -load_scenario(n).duration)
    plays = []
    for name in names:
        # Long scenarios (a 2-minute rule delay) run faster so each stays within ~15 s.
        speed = max(20.0, load_scenario(name).duration / 15)
        plays.append(Play(name, speed, tmp_path_factory.mktemp(name)))
    return dict(zip(names, play_apart(plays, at_once=PLAYED_AT_ONCE), strict=True))


@pytest.mark.slow
@pytest.mark.mosquitto
@pytest.mark.parametrize("name", sorted(library()))
def test_library_scenario_holds_end_to_end(
        name: str, library_results: dict[str, Played | BaseException]) -> None:
    """Simulator → real protocol → drivers → rules: every expect: section must hold."""
    played = library_results[name]
    if isinstance(played, BaseException):
        raise played
    assert played.result.passed, "\n".join([*played.result.failures, "", *played.lines])
