"""The ``propgw`` command line: run, check-config, read, watch, demo, sim, alarms, reports,
orders, incidents, users.

Only this module configures logging (through :mod:`gateway.logs`). Config mistakes are printed
as one line per problem and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.check_cli import print_summary

# Building the parser (every command, `--version` too) imports only light modules: each
# command imports what it needs when it runs. tests/test_startup.py holds this line.

__all__ = ["main", "print_summary"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
#: What a shell reports for a process ended by SIGPIPE (128 + 13).
EXIT_SIGPIPE = 141

log = logging.getLogger("propgw")

#: Used when the hard limit is unlimited: Linux refuses more than fs.nr_open (2**20 default).
_NOFILE_CEILING = 1 << 20


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``propgw`` console script."""
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
    except BrokenPipeError:
        return _stdout_closed()


def _dispatch(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_command_in(argv)).parse_args(argv)
    if not getattr(args, "command", None):
        _parser().print_help()
        return EXIT_CONFIG
    handler = {"run": _cmd_run, "check-config": _cmd_check, "demo": _cmd_demo,
               "sim": _cmd_sim, "alarms": _cmd_alarms, "reports": _cmd_reports,
               "orders": _cmd_orders, "incidents": _cmd_incidents, "users": _cmd_users,
               "read": _cmd_commission, "watch": _cmd_commission,
               "example": _cmd_example}[args.command]
    from gateway.errors import ConfigError

    try:
        return handler(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _stdout_closed() -> int:
    """The reader of our output went away (``propgw ... | head``): stop quietly, as a Unix
    tool killed by SIGPIPE would, instead of a traceback. Python ignores SIGPIPE so that a
    closed socket does not kill the gateway; this is the same for standard output."""
    # Later flushes (at exit) must not fail again on the dead pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_SIGPIPE


#: Commands whose parser another module builds: (module, function). A run imports only the
#: module of its own command; ``--help`` and mistakes import them all to list every command.
_PARSERS = {
    "check-config": ("gateway.check_cli", "add_check_parser"),
    "read": ("gateway.commission", "add_commission_parser"),
    "watch": ("gateway.commission", "add_commission_parser"),
    "example": ("gateway.example_cli", "add_example_parser"),
    "sim": ("gateway.sim_cli", "add_sim_parser"),
    "alarms": ("gateway.alarms_cli", "add_alarms_parser"),
    "incidents": ("gateway.incidents_cli", "add_incidents_parser"),
    "reports": ("gateway.reports_cli", "add_reports_parser"),
    "orders": ("gateway.orders_cli", "add_orders_parser"),
    "users": ("gateway.users_cli", "add_users_parser"),
}

#: Every command, in the order ``propgw --help`` lists them.
_ORDER = ("run", "check-config", "demo", *(n for n in _PARSERS if n != "check-config"))


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it is the first argument (the top level has no options
    but ``--help`` and ``--version``, which need every command or none)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``command`` (a known one), only that command's parser is built,
    so that ``propgw run`` does not import the modules of the other commands."""
    parser = argparse.ArgumentParser(
        prog="propgw", formatter_class=_HelpFormatter,
        description="Edge gateway for smart property facilities (elevators, fire panels, "
                    "access control, meters): detects alarms and raises work orders upstream.")
    parser.add_argument("--version", action="version", version=f"propgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    only = command if command in _ORDER else None
    added: set[tuple[str, str]] = set()
    for name in _ORDER:
        if only not in (None, name):
            continue
        if name == "run":
            _add_run_parser(sub)
        elif name == "demo":
            _add_demo_parser(sub)
        elif _PARSERS[name] not in added:
            added.add(_PARSERS[name])
            module, function = _PARSERS[name]
            getattr(importlib.import_module(module), function)(sub)
    return parser


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run the gateway with a site config file",
                         formatter_class=_HelpFormatter)
    run.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                     help="site config (YAML)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="override the config's log_level")


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run a simulated site end to end (its own MQTT "
                                       "broker is the demo extra)")
    demo.add_argument("--duration", type=float, metavar="S",
                      help="stop by itself after S seconds (default: run until Ctrl-C)")
    demo.add_argument("--broker", metavar="mqtt://HOST:PORT",
                      help="device-side broker to use instead of the embedded one")
    demo.add_argument("--upstream", metavar="mqtt://HOST:PORT",
                      help="send work orders to this broker (watch with mosquitto_sub)")
    demo.add_argument("--log-level", default="WARNING",
                      choices=["DEBUG", "INFO", "WARNING", "ERROR"])


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, sized to the terminal without :mod:`shutil`: argparse imports shutil for
    that on every ``add_argument``, and shutil brings the bz2 and lzma libraries along (0.5 MB
    of a running gateway's memory, for help text it never prints)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _terminal_columns())


def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says: $COLUMNS, the terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):  # not a terminal, or no real file
            columns = 0
    return columns if columns > 0 else 80


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import logs
    from gateway.app import Gateway  # heavy imports only for the command that needs them
    from gateway.config import load_config
    from gateway.errors import ConfigProblem

    warnings: list[ConfigProblem] = []
    config = load_config(args.config, warnings=warnings)
    library_log = logs.configure(args.log_level or config.log_level,
                                 timezone=config.site.timezone)
    # Owner-only by default: the outbox and the alarm journal describe people and places.
    os.umask(0o077)
    log.info("propgw %s starting with %s", __version__, args.config)
    for warning in warnings:
        log.warning("config %s: %s", args.config, warning)
    _raise_open_file_limit()

    async def go() -> int:
        gateway = Gateway(config, config_path=args.config, freeze_heap=True)
        await gateway.run()
        return gateway.exit_code

    try:
        return asyncio.run(go())
    finally:
        library_log.flush()


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.check_cli import run_check_command

    return run_check_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import logs
    from gateway.demo import DemoOptions, parse_mqtt_url, run_demo

    # The demo prints alarms and work orders itself; their log lines would only repeat them.
    logs.configure(args.log_level, announcements=False)
    for name in ("gateway.alarms", "gateway.workorders"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        options = DemoOptions(
            duration=args.duration,
            broker=parse_mqtt_url(args.broker) if args.broker else None,
            upstream=parse_mqtt_url(args.upstream) if args.upstream else None,
        )
    except ValueError as exc:
        print(f"propgw demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if options.broker is None:
        from gateway.broker import BrokerUnavailable, require_embedded_broker

        try:
            require_embedded_broker()
        except BrokerUnavailable as exc:
            print(f"propgw demo: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    return asyncio.run(run_demo(options))


def _cmd_alarms(args: argparse.Namespace) -> int:
    from gateway.alarms_cli import run_alarms_command

    return run_alarms_command(args)


def _cmd_incidents(args: argparse.Namespace) -> int:
    from gateway.incidents_cli import run_incidents_command

    return run_incidents_command(args)
def _cmd_reports(args: argparse.Namespace) -> int:
    from gateway.reports_cli import run_reports_command

    return run_reports_command(args)


def _cmd_orders(args: argparse.Namespace) -> int:
    from gateway.orders_cli import run_orders_command

    return run_orders_command(args)


def _cmd_users(args: argparse.Namespace) -> int:
    from gateway.users_cli import run_users_command

    return run_users_command(args)


def _cmd_example(args: argparse.Namespace) -> int:
    from gateway.example_cli import run_example_command

    return run_example_command(args)


def _cmd_commission(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.commission import run_commission_command

    # Driver warnings (a link down) would repeat what the command shows itself, and would
    # break into the table that `watch` redraws.
    logs.configure("ERROR")
    return run_commission_command(args)


def _cmd_sim(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.broker import BrokerUnavailable
    from gateway.sim_cli import run_sim_command

    logs.configure("ERROR")
    try:
        return run_sim_command(args)
    except BrokerUnavailable as exc:
        print(f"propgw sim: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: connections, serial ports, SQLite files and
    the HTTP client share it, and a distribution's soft default (often 1024) is not meant as
    this service's budget (the systemd unit sets both)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.debug("open-file limit %d (hard limit %d)", soft, hard)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("open-file limit stays %d: cannot raise it to %d: %s", soft, target, exc)
    else:
        log.debug("open-file limit raised from %d to %d", soft, target)


if __name__ == "__main__":
    sys.exit(main())
