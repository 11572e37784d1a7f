"""What ``propgw sim list|run|device`` do (parsed by :mod:`gateway.sim_cli`)."""


from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import termios
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

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
from simulators.site import Endpoint, SerialLine, SimSite

__all__ = ["run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_DEFAULT_TCP_PORT = 15020
_DEFAULT_IDS = {"elevator": "E1", "fire_panel": "FACP-1", "access_control": "ACS-1",
                "energy_meter": "M1", "water_meter": "W1"}


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
    upstream = parse_mqtt_url(args.upstream) if args.upstream else None
    print(f"scenario {scenario.name}: {' '.join(scenario.description.split())}", file=out)
    print(f"{scenario.duration:g}s of scenario time at speed {args.speed:g}", file=out,
          flush=True)
    result = await run_scenario(scenario, speed=args.speed, broker=broker, upstream=upstream,
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
    line = _serial_line(args)
    port = None if line else _tcp_port(args.port)
    pairs = _ids_and_units(args)
    try:
        specs = [DeviceSpec.model_validate({"id": device_id, "kind": args.kind, "unit": unit,
                                            "port": port, "bus": "line", **options})
                 for device_id, unit in pairs]
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'device'}: "
                                   f"{e['msg']}" for e in exc.errors(include_url=False))) from None
    scenario = Scenario(name=f"device-{specs[0].id}", description="simulated device(s)",
                        duration=10 * 365 * 86400.0, devices=specs)
    broker = parse_mqtt_url(args.broker)

    def show(t: float, text: str) -> None:
        print(f"[{t:8.1f}s] {text}", file=out, flush=True)

    site = SimSite(scenario, clock=SystemClock(), broker=broker, host=args.host, on_event=show,
                   serial=line)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(site)
        except (RuntimeError, OSError) as exc:
            # pymodbus: "Could not start listen, please check address." (port taken, no tty)
            where = line.port if line else f"{args.host}:{port}"
            raise ValueError(f"cannot serve Modbus on {where}: {exc}") from None
        except termios.error as exc:
            # A pty refuses parity (PARENB) with EINVAL; so may an adapter other settings.
            reason = exc.args[-1] if exc.args else exc
            raise ValueError(f"the serial port {args.serial} refuses the settings "
                             f"{args.baudrate} {args.bytesize}{args.parity}{args.stopbits}: "
                             f"{reason}") from None
        control = await stack.enter_async_context(
            ControlServer(site.sims, port=args.control_port, apply=site.apply))
        for spec in specs:
            _print_endpoint(out, site.endpoints.get(spec.id), spec.id, args.kind)
        if line:
            print(f"Modbus RTU line: {line}", file=out)
        first = specs[0].id
        print(f"control API: {control.url}  (POST {control.url}devices/{first}/<action> "
              "with JSON parameters)", file=out)
        other = (f" ('{specs[1].id} <action>' for {specs[1].id})" if len(specs) > 1 else "")
        print("type an action, e.g. 'stop_between_floors' or 'mode mode=inspection'"
              f"{other}; 'state' shows the state, 'help' the actions; Ctrl-C quits", file=out,
              flush=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(site.run(), name="sim.site")
            for spec in specs:
                tg.create_task(_watch(site.sims[spec.id], out,
                                      label=spec.id if len(specs) > 1 else None),
                               name=f"sim.watch[{spec.id}]")
            if sys.stdin.isatty():
                tg.create_task(_prompt(site, first, out), name="sim.prompt")
    return EXIT_OK


def _tcp_port(text: str | None) -> int:
    """``--port`` as a TCP port, or one line that says what to write instead."""
    if text is None:
        return _DEFAULT_TCP_PORT
    try:
        port = int(text)
    except ValueError:
        hint = (f"; to serve Modbus RTU on a serial port, use --serial {text}"
                if "/" in text else "")
        raise ValueError(f"--port wants a TCP port number 1..65535, got {text!r}{hint}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"--port wants a TCP port number 1..65535, got {port} (the gateway "
                         "config names a fixed port, so 0 = any free port is not offered)")
    return port


def _serial_line(args: argparse.Namespace) -> SerialLine | None:
    if args.serial is None:
        return None
    if args.kind not in MODBUS_KINDS:
        raise ValueError(f"--serial serves Modbus RTU, but {args.kind} is an MQTT simulator "
                         f"(Modbus kinds: {', '.join(sorted(MODBUS_KINDS))})")
    if args.port is not None:
        raise ValueError("give either --port (Modbus TCP) or --serial (Modbus RTU), not both")
    if not Path(args.serial).exists():
        raise ValueError(f"--serial {args.serial}: no such serial port (for a virtual line, "
                         "start socat first; see docs/commissioning.md)")
    if not 300 <= args.baudrate <= 921600:
        raise ValueError(f"--baudrate wants 300..921600, got {args.baudrate}")
    return SerialLine(args.serial, baudrate=args.baudrate, parity=args.parity,
                      bytesize=args.bytesize, stopbits=args.stopbits)


def _ids_and_units(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(device id, unit id) of each simulated device: one per ``--unit`` (at least one)."""
    units: list[int] = []
    for text in args.unit or ["1"]:
        try:
            unit = int(text)
        except ValueError:
            unit = -1
        if not 1 <= unit <= 247:
            raise ValueError(f"--unit wants a Modbus unit id 1..247, got {text!r}")
        units.append(unit)
    if len(set(units)) != len(units):
        raise ValueError(f"--unit ids must differ on one line, got {units}")
    if len(units) > 1 and args.kind not in MODBUS_KINDS:
        raise ValueError(f"several --unit need a Modbus kind, not {args.kind}")
    default = _DEFAULT_IDS[args.kind]
    ids: list[str] = list(args.id)
    if not ids:
        ids = ([default] if len(units) == 1
               else [f"{default.rstrip('0123456789')}{i}" for i in range(1, len(units) + 1)])
    if len(ids) != len(units):
        raise ValueError(f"{len(ids)} --id for {len(units)} --unit: give one --id per --unit, "
                         "or none")
    return list(zip(ids, units, strict=True))


def _print_endpoint(out: TextIO, endpoint: Endpoint | None, device_id: str, kind: str) -> None:
    if endpoint is None:
        print(f"{kind} {device_id}: not reachable (no broker?)", file=out)
    else:
        print(f"{kind} {device_id}: {endpoint.url}", file=out)


async def _watch(sim: Simulator, out: TextIO, *, label: str | None = None) -> None:
    """Print the device's state whenever it changes (checked twice a second)."""
    last: dict[str, Any] = {}
    prefix = f"  {label} state: " if label else "  state: "
    while True:
        state = sim.snapshot()
        changed = {k: v for k, v in state.items() if last.get(k) != v}
        if changed:
            print(prefix + ", ".join(f"{k}={v}" for k, v in changed.items()), file=out,
                  flush=True)
        last = state
        await asyncio.sleep(0.5)


async def _prompt(site: SimSite, device_id: str, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        words = line.split()
        target = device_id
        if len(words) > 1 and words[0] in site.sims:
            target, words = words[0], words[1:]
        sim = site.sims[target]
        if words[0] == "help":
            for action in sim.actions():
                print(f"  {action.name:<22} {action.help}", file=out)
        elif words[0] == "state":
            print(json.dumps(sim.snapshot(), ensure_ascii=False), file=out)
        else:
            params = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            try:
                site.apply(target, words[0],
                           {k: _parse_value(v) for k, v in params.items()})
            except ActionError as exc:
                print(f"  error: {exc}", file=out)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
