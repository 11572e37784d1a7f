"""What ``propgw sim list|run|device`` do (parsed by :mod:`gateway.sim_cli`)."""


from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from gateway.clock import SystemClock
from gateway.demo import parse_mqtt_url
from gateway.simrun import run_scenario
from simulators.base import ActionError, Simulator
from simulators.control import ControlServer
from simulators.registry import MODBUS_KINDS, create
from simulators.scenario import (
    KINDS,
    DeviceSpec,
    Scenario,
    ScenarioError,
    library,
    load_scenario,
)
from simulators.site import Endpoint, SimSite

__all__ = ["run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        if args.sim_command == "list":
            _list(out)
            return EXIT_OK
        if args.sim_command == "run":
            return asyncio.run(_run(args, out))
        return asyncio.run(_device(args, out))
    except (ScenarioError, ActionError, ValueError) as exc:
        print(f"propgw sim: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _list(out: TextIO) -> None:
    print("Simulator kinds (propgw sim device KIND) and their actions:", file=out)
    for kind in KINDS:
        try:
            sim = create(DeviceSpec(id="x", kind=kind), clock=SystemClock(), seed=0,
                         broker=("127.0.0.1", 1883))
        except ScenarioError:
            continue
        protocol = "Modbus TCP/RTU" if kind in MODBUS_KINDS else "MQTT"
        print(f"\n  {kind} ({protocol})", file=out)
        for action in sim.actions():
            params = ", ".join(f"{k}: {v}" for k, v in (action.params or {}).items())
            print(f"    {action.name:<22} {action.help}" + (f" [{params}]" if params else ""),
                  file=out)
    print("\nScenarios (propgw sim run NAME --speed 10):", file=out)
    for name in library():
        scenario = load_scenario(name)
        print(f"  {name:<40} {' '.join(scenario.description.split())}", file=out)


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    scenario = load_scenario(args.scenario)
    broker = parse_mqtt_url(args.broker) if args.broker else None
    print(f"scenario {scenario.name}: {' '.join(scenario.description.split())}", file=out)
    print(f"{scenario.duration:g}s of scenario time at speed {args.speed:g}", file=out,
          flush=True)
    result = await run_scenario(scenario, speed=args.speed, broker=broker,
                                on_line=lambda line: print(line, file=out, flush=True))
    if result.passed:
        print(f"PASS: {len(scenario.expect.alarms)} expected alarm(s) fired, "
              f"{len(scenario.expect.no_alarms)} forbidden one(s) did not", file=out)
        return EXIT_OK
    for failure in result.failures:
        print(f"FAIL: {failure}", file=out)
    return EXIT_FAILED


async def _device(args: argparse.Namespace, out: TextIO) -> int:
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option wants KEY=VALUE, got {item!r}")
        options[key] = _parse_value(value)
    device_id = args.id or {"elevator": "E1", "fire_panel": "FACP-1",
                            "access_control": "ACS-1", "energy_meter": "M1",
                            "water_meter": "W1"}[args.kind]
    spec = DeviceSpec.model_validate({"id": device_id, "kind": args.kind, "unit": args.unit,
                                      "port": args.port, **options})
    scenario = Scenario(name=f"device-{device_id}", description="one device",
                        duration=10 * 365 * 86400.0, devices=[spec])
    broker = parse_mqtt_url(args.broker)

    def show(t: float, text: str) -> None:
        print(f"[{t:8.1f}s] {text}", file=out, flush=True)

    site = SimSite(scenario, clock=SystemClock(), broker=broker, host=args.host, on_event=show)
    async with site, ControlServer(site.sims, port=args.control_port,
                                   apply=site.apply) as control:
        endpoint = site.endpoints.get(device_id)
        _print_endpoint(out, endpoint, device_id, args.kind)
        print(f"control API: {control.url}  (POST {control.url}devices/{device_id}/<action> "
              "with JSON parameters)", file=out)
        print("type an action, e.g. 'stop_between_floors' or 'mode mode=inspection'; "
              "'state' shows the state, 'help' the actions; Ctrl-C quits", file=out, flush=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(site.run(), name="sim.site")
            tg.create_task(_watch(site.sims[device_id], out), name="sim.watch")
            if sys.stdin.isatty():
                tg.create_task(_prompt(site, device_id, out), name="sim.prompt")
    return EXIT_OK


def _print_endpoint(out: TextIO, endpoint: Endpoint | None, device_id: str, kind: str) -> None:
    if endpoint is None:
        print(f"{kind} {device_id}: not reachable (no broker?)", file=out)
    else:
        print(f"{kind} {device_id}: {endpoint.url}", file=out)


async def _watch(sim: Simulator, out: TextIO) -> None:
    """Print the device's state whenever it changes (checked twice a second)."""
    last: dict[str, Any] = {}
    while True:
        state = sim.snapshot()
        changed = {k: v for k, v in state.items() if last.get(k) != v}
        if changed:
            print("  state: " + ", ".join(f"{k}={v}" for k, v in changed.items()), file=out,
                  flush=True)
        last = state
        await asyncio.sleep(0.5)


async def _prompt(site: SimSite, device_id: str, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        words = line.split()
        sim = site.sims[device_id]
        if words[0] == "help":
            for action in sim.actions():
                print(f"  {action.name:<22} {action.help}", file=out)
        elif words[0] == "state":
            print(json.dumps(sim.snapshot(), ensure_ascii=False), file=out)
        else:
            params = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            try:
                site.apply(device_id, words[0],
                           {k: _parse_value(v) for k, v in params.items()})
            except ActionError as exc:
                print(f"  error: {exc}", file=out)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
