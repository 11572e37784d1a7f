"""``propgw sim``: list simulators and scenarios, run a scenario, run one device to poke at.

* ``propgw sim list`` — simulator kinds with their actions, and the scenario library.
* ``propgw sim run SCENARIO [--speed N]`` — plays a scenario against a real gateway and checks
  its ``expect:`` section (exit 0 when it holds, 1 when not).
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

    dev = sim_sub.add_parser("device", help="run one simulated device until Ctrl-C")
    dev.add_argument("kind", choices=KINDS)
    dev.add_argument("--id", default=None, help="device id (default: the kind's short name)")
    dev.add_argument("--port", type=int, default=15020, help="Modbus TCP port (default 15020)")
    dev.add_argument("--host", default="127.0.0.1", help="address to serve on")
    dev.add_argument("--unit", type=int, default=1, help="Modbus unit id")
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
