"""The ``read`` and ``watch`` sub-commands: arguments, exit codes, dispatch.

Kept free of driver imports: every ``propgw`` start builds this parser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["EXIT_BAD", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE", "add_commission_parser",
           "run_commission_command", "silence"]

#: Every point read has quality good (``read``); ``watch`` ended by Ctrl-C or ``--duration``.
EXIT_OK = 0
#: The device did not answer: timeout, connection refused, broker unreachable, no message.
EXIT_NO_ANSWER = 1
#: Bad command line or config: unknown device or point (the valid ones are listed).
EXIT_USAGE = 2
#: The device answered, but at least one point is bad (Modbus exception, undecodable value).
EXIT_BAD = 3

_EXIT_CODES = """exit status:
  0  every point read is good
  1  the device did not answer (timeout, connection refused, broker down, no message)
  2  usage or config mistake (unknown device or point: the valid ones are listed)
  3  the device answered but at least one point is bad (exception code, undecodable value)"""


def add_commission_parser(sub: Any) -> None:
    """Register ``propgw read`` and ``propgw watch`` on the top-level sub-parser set."""
    read = sub.add_parser(
        "read", help="read one device once and show raw and decoded values (no gateway)",
        description="Poll one device once, as the gateway would, without starting the "
                    "gateway: Modbus registers (hex and decimal) or the MQTT payload, next "
                    "to each point's decoded value, quality and unit.",
        epilog=_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    read.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                      help="site config (YAML)")
    read.add_argument("device", metavar="DEVICE", help="device id from the config")
    read.add_argument("points", metavar="POINT", nargs="*",
                      help="only these points (default: all of the device's points)")
    read.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                      help="MQTT: how long to wait for messages (default 10 s); Modbus uses "
                           "the device's own timeout and retries")

    watch = sub.add_parser(
        "watch", help="show live values of the site's devices (no gateway)",
        description="Poll (Modbus, at each device's poll_interval) and subscribe (MQTT) like "
                    "the gateway, and show every value as it changes: a table redrawn in "
                    "place on a terminal, one line per change when piped. Ctrl-C ends it.")
    watch.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                       help="site config (YAML)")
    watch.add_argument("devices", metavar="DEVICE", nargs="*",
                       help="only these devices (default: every enabled device)")
    watch.add_argument("--duration", type=_seconds, default=None, metavar="S",
                       help="stop by itself after S seconds (default: until Ctrl-C)")
    watch.add_argument("--lines", action="store_true",
                       help="one line per change even on a terminal")


def run_commission_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``propgw read`` or ``propgw watch``; the drivers are imported only now.

    A reader that goes away (``propgw read ... | head``) ends the command quietly.
    """
    try:
        if args.command == "read":
            from gateway.commission._read import run_read  # noqa: PLC0415  # drivers load late

            return run_read(args, out)
        from gateway.commission._watch import run_watch  # noqa: PLC0415  # ditto

        return run_watch(args, out)
    except BrokenPipeError:
        silence(out)
        return EXIT_OK


def silence(out: TextIO) -> None:
    """After the reader closed the pipe, send what is left (the interpreter's final flush of
    stdout) nowhere instead of into a second BrokenPipeError."""
    if out is sys.stdout:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 86400, got {text}")
    return value
