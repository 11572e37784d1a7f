"""What ``propgw --version`` and ``propgw check-config`` import: module sets, not times.

Every systemd (re)start and every commissioning check pays for the imports; on a Pi that is
3-4x what it is here. The times are in bench/startup.py; these tests hold the causes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Runs ``main(argv)`` in a fresh interpreter and prints the names of the loaded modules.
_LOADED = """
import contextlib, io, json, sys
from gateway.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    with contextlib.suppress(SystemExit):
        main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
"""

#: The protocol, broker, HTTP and demo libraries: only `run`, `demo`, `sim` and the console
#: need them.
HEAVY = ("pymodbus", "serial", "aiomqtt", "paho", "aiohttp", "aiohttp_pydantic", "amqtt",
         "argon2", "multidict", "yarl", "influxdb_client", "reactivex")


def loaded(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _LOADED, *argv], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PLATFORM_MQTT_PASSWORD": "x", "LOCAL_MQTT_PASSWORD": "x"}).stdout
    return set(json.loads(out))


def packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_loads_no_library_and_no_config_models() -> None:
    modules = loaded("--version")
    assert packages(modules) & {*HEAVY, "pydantic", "pydantic_core", "yaml", "asyncio"} == set()
    # Nor the gateway's own heavy parts: the config models, the alarm stage, the simulators.
    ours = {m for m in modules if m.split(".")[0] in ("gateway", "drivers", "simulators")}
    assert ours <= {"gateway", "gateway._imports", "gateway.cli", "gateway.check_cli",
                    "gateway.alarms_cli",
                    "gateway.users_cli", "gateway.sim_cli", "gateway.commission",
                    "gateway.incidents_cli", "gateway.reports_cli", "gateway.orders_cli",
                    "gateway.commission._cli", "gateway.example_cli", "simulators",
                    "simulators.kinds"}, \
        sorted(ours)


def test_help_of_every_command_loads_no_library() -> None:
    for argv in (["--help"], ["run", "--help"], ["check-config", "--help"],
                 ["sim", "device", "--help"], ["alarms", "report", "--help"]):
        assert packages(loaded(*argv)) & {*HEAVY, "pydantic"} == set(), argv


def test_check_config_loads_the_config_models_but_no_protocol_library() -> None:
    # site.yaml has Modbus TCP and RTU devices, MQTT devices and an upstream: every summary
    # line (polling plan, t3.5, subscriptions) is computed without the libraries.
    modules = loaded("check-config", "config/examples/site.yaml")
    assert "gateway.config" in modules and "drivers.modbus._plan" in modules
    assert packages(modules) & set(HEAVY) == set()
    assert not {"drivers.modbus._link", "drivers.mqtt._driver", "gateway.alarms"} & modules


# --------------------------------------------------------------------------- the demo extra

#: Runs ``main(argv)`` as if amqtt (the `demo` extra) were not installed.
_WITHOUT_AMQTT = """
import sys
sys.modules["amqtt"] = None  # `import amqtt` now raises ImportError
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_amqtt_is_only_in_the_demo_extra() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("amqtt")]
    assert [d for d in project["optional-dependencies"]["demo"] if d.startswith("amqtt")]
    assert "propgw[demo]" in project["optional-dependencies"]["test"]
    assert "scripts/setup.sh --demo" in (REPO / "scripts" / "demo.sh").read_text()


def test_the_gateway_runs_without_the_demo_extra() -> None:
    modules = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, sys; import gateway.app, gateway.cli; "
                               "print(json.dumps(sorted(sys.modules)))"],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=60).stdout)
    assert "gateway.app" in modules and "amqtt" not in packages(set(modules))


def test_demo_without_the_demo_extra_says_how_to_install_it_in_one_line() -> None:
    for argv, prefix in ((["demo", "--duration", "1"], "propgw demo: "),
                         (["sim", "run", "door-held-open"], "propgw sim: ")):
        result = subprocess.run([sys.executable, "-c", _WITHOUT_AMQTT, *argv], cwd=REPO,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1, result.stderr
        assert result.stderr == (f"{prefix}the embedded MQTT broker needs the demo extra: pip "
                                 f"install 'propgw[demo]' (scripts/demo.sh installs it), or "
                                 f"give --broker mqtt://HOST:PORT\n"), result.stderr


def test_a_gateway_with_mqtt_upstream_only_loads_no_http_library() -> None:
    # The two-elevator example: Modbus devices, MQTT upstream, no console, no status API.
    code = ("import json, sys\n"
            "from gateway.app import Gateway\n"
            "from gateway.config import load_config\n"
            "Gateway(load_config('config/examples/two-elevators.yaml'))\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    modules = set(json.loads(subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True,
        timeout=60).stdout))
    assert {"pymodbus", "aiomqtt", "drivers.modbus._link"} <= modules
    assert packages(modules) & {"aiohttp", "aiohttp_pydantic", "argon2", "amqtt"} == set()


def test_a_command_builds_only_its_own_parser() -> None:
    # `propgw run` (every systemd start) does not import the other commands' modules; the
    # top-level help still lists every command.
    others = {"gateway.users_cli", "gateway.alarms_cli", "gateway.sim_cli", "gateway.commission",
              "gateway.reports_cli", "gateway.orders_cli", "gateway.incidents_cli",
              "gateway.example_cli", "simulators"}
    assert not others & loaded("run", "--help")
    assert "gateway.users_cli" in loaded("users", "--help")
    assert others - {"simulators"} <= loaded("--help")


def test_run_parses_its_arguments_without_shutil() -> None:
    # argparse sizes help text with shutil, which loads the bz2 and lzma libraries: 0.5 MB of
    # every running gateway's memory. (The missing file ends the run right after parsing.)
    modules = loaded("run", "-c", "/nonexistent/site.yaml")
    assert "gateway.config" in modules
    assert not {"shutil", "bz2", "lzma"} & modules
