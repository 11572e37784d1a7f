"""``propgw sim``: list simulators and scenarios, run a scenario, run one device to poke at.

* ``propgw sim list`` — simulator kinds with their actions, and the scenario library.
* ``propgw sim run SCENARIO [--speed N] [--upstream mqtt://HOST:PORT]`` — plays a scenario
  against a real gateway and checks its ``expect:`` section (exit 0 when it holds, 1 when not);
  with ``--upstream`` the gateway also publishes its upstream messages to that broker.
* ``propgw sim device KIND`` — one long-running device for commissioning, with an HTTP control
  API and a command prompt on stdin (``stop_between_floors``, ``mode mode=inspection``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from simulators.kinds import KINDS

__all__ = ["add_sim_parser", "run_sim_command"]

def add_sim_parser(sub: Any) -> None:
    """Register ``propgw sim`` and its sub-commands on the top-level sub-parser set."""
    sim = sub.add_parser("sim", help="device simulators and scenarios")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    sim_sub.add_parser("list", help="simulator kinds, their actions, and the scenario library")

    run = sim_sub.add_parser("run", help="play a scenario against the gateway and check it")
    run.add_argument("scenario", help="a library scenario name or a scenario file")
    run.add_argument("--speed", type=float, default=1.0,
                     help="time acceleration (default 1 = real time; tests use 10-20)")
    run.add_argument("--broker", metavar="mqtt://HOST:PORT",
                     help="MQTT broker for MQTT simulators (default: an embedded one)")
    run.add_argument("--upstream", metavar="mqtt://HOST:PORT",
                     help="also send the gateway's upstream messages (work orders, alarms, "
                          "gateway status) to this broker, as to a platform's, under "
                          "propgw/sim-<scenario>/")

    dev = sim_sub.add_parser(
        "device", help="run simulated device(s) until Ctrl-C, on Modbus TCP, RTU or MQTT",
        description="Run one simulated device (or, with several --unit, several Modbus units "
                    "on one line) for commissioning: Modbus kinds serve Modbus TCP on --port or "
                    "Modbus RTU on the serial port --serial; MQTT kinds publish to --broker.")
    dev.add_argument("kind", choices=KINDS)
    dev.add_argument("--id", action="append", default=[], metavar="ID",
                     help="device id (default: the kind's short name, E1, M1...); repeat it "
                          "with --unit to name each unit")
    dev.add_argument("--port", default=None, metavar="PORT",
                     help="Modbus TCP port (default 15020)")
    dev.add_argument("--host", default="127.0.0.1", help="address to serve on")
    dev.add_argument("--unit", action="append", default=[], metavar="N",
                     help="Modbus unit id (default 1); repeat it for several devices of the "
                          "kind on one line: --unit 1 --unit 2")
    rtu = dev.add_argument_group("Modbus RTU (instead of TCP)")
    rtu.add_argument("--serial", metavar="PATH",
                     help="serve Modbus RTU on this serial port, e.g. /dev/ttyUSB0 or one end "
                          "of a socat pty pair (/tmp/ttyV0)")
    rtu.add_argument("--baudrate", type=int, default=9600, help="default 9600")
    rtu.add_argument("--parity", choices=["N", "E", "O"], default="N", help="default N")
    rtu.add_argument("--bytesize", type=int, choices=[7, 8], default=8, help="default 8")
    rtu.add_argument("--stopbits", type=int, choices=[1, 2], default=1, help="default 1")
    dev.add_argument("--broker", metavar="mqtt://HOST:PORT", default="mqtt://127.0.0.1:1883",
                     help="broker MQTT simulators publish to")
    dev.add_argument("--control-port", type=int, default=8081,
                     help="HTTP control API port (0 = any free port)")
    dev.add_argument("--seed", type=int, default=0)
    dev.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="simulator option, e.g. --option traffic=false (repeatable)")

def run_sim_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``propgw sim ...``; the simulators are imported only now, so that other commands
    (and the argument parser every command builds) do not load them."""
    from gateway.sim_commands import run

    return run(args, out)
