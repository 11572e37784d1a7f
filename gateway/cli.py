"""The ``propgw`` command line: run, check-config, read, watch, demo, sim, alarms, users.

Only this module configures logging (through :mod:`gateway.logs`). Config mistakes are printed
as one line per problem and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from gateway import __version__, logs
from gateway.config import GatewayConfig, load_config, offline_warnings
from gateway.errors import ConfigError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = logging.getLogger("propgw")

#: Used when the hard limit is unlimited: Linux refuses more than fs.nr_open (2**20 default).
_NOFILE_CEILING = 1 << 20


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``propgw`` console script."""
    args = _parser().parse_args(argv)
    if not getattr(args, "command", None):
        _parser().print_help()
        return EXIT_CONFIG
    handler = {"run": _cmd_run, "check-config": _cmd_check, "demo": _cmd_demo,
               "sim": _cmd_sim, "alarms": _cmd_alarms, "users": _cmd_users,
               "read": _cmd_commission, "watch": _cmd_commission}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="propgw",
        description="Edge gateway for smart property facilities (elevators, fire panels, "
                    "access control, meters): detects alarms and raises work orders upstream.")
    parser.add_argument("--version", action="version", version=f"propgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway with a site config file")
    run.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                     help="site config (YAML)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="override the config's log_level")

    check = sub.add_parser("check-config", help="validate a config file and summarise it; "
                                                "exit 2 on any mistake")
    check.add_argument("config", type=Path, metavar="FILE")

    demo = sub.add_parser("demo", help="run a simulated site end to end (nothing to install)")
    demo.add_argument("--duration", type=float, metavar="S",
                      help="stop by itself after S seconds (default: run until Ctrl-C)")
    demo.add_argument("--broker", metavar="mqtt://HOST:PORT",
                      help="device-side broker to use instead of the embedded one")
    demo.add_argument("--upstream", metavar="mqtt://HOST:PORT",
                      help="send work orders to this broker (watch with mosquitto_sub)")
    demo.add_argument("--log-level", default="WARNING",
                      choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    from gateway.commission import add_commission_parser

    add_commission_parser(sub)
    from gateway.sim_cli import add_sim_parser

    add_sim_parser(sub)
    from gateway.alarms_cli import add_alarms_parser

    add_alarms_parser(sub)
    from gateway.users_cli import add_users_parser

    add_users_parser(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway  # heavy imports only for the command that needs them

    config = load_config(args.config)
    library_log = logs.configure(args.log_level or config.log_level,
                                 timezone=config.site.timezone)
    # Owner-only by default: the outbox and the alarm journal describe people and places.
    os.umask(0o077)
    log.info("propgw %s starting with %s", __version__, args.config)
    _raise_open_file_limit()

    async def go() -> int:
        gateway = Gateway(config, config_path=args.config)
        await gateway.run()
        return gateway.exit_code

    try:
        return asyncio.run(go())
    finally:
        library_log.flush()


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    summary = io.StringIO()
    print(f"{args.config}: OK", file=summary)
    print_summary(config, summary)
    for key, message in offline_warnings(config):
        print(f"warning: {key}: {message}", file=summary)
    # Names come from the file: a terminal escape in one is shown, not obeyed.
    for line in summary.getvalue().removesuffix("\n").split("\n"):
        print("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
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
    return asyncio.run(run_demo(options))


def _cmd_alarms(args: argparse.Namespace) -> int:
    from gateway.alarms_cli import run_alarms_command

    return run_alarms_command(args)


def _cmd_users(args: argparse.Namespace) -> int:
    from gateway.users_cli import run_users_command

    return run_users_command(args)


def _cmd_commission(args: argparse.Namespace) -> int:
    from gateway.commission import run_commission_command

    # Driver warnings (a link down) would repeat what the command shows itself, and would
    # break into the table that `watch` redraws.
    logs.configure("ERROR")
    return run_commission_command(args)


def _cmd_sim(args: argparse.Namespace) -> int:
    from gateway.sim_cli import run_sim_command

    logs.configure("ERROR")
    return run_sim_command(args)


def print_summary(config: GatewayConfig, out: TextIO) -> None:
    """What the gateway will do with this config: devices, points, polling, rules."""
    from drivers.modbus import describe_polling
    from drivers.mqtt import describe_subscriptions

    site = config.site
    print(f"site {site.id} ({site.name}), gateway {site.gateway_id}", file=out)
    for broker_id, broker in config.brokers.items():
        tls = "TLS" if broker.tls else "plain"
        user = f", user {broker.username}" if broker.username else ""
        print(f"broker {broker_id}: {broker.host}:{broker.effective_port} MQTT {broker.protocol} "
              f"{tls}{user}", file=out)
    if config.upstream:
        print(f"upstream: broker {config.upstream.broker}, topics "
              f"{config.upstream.topic_prefix}/{site.id}/..., QoS {config.upstream.qos}",
              file=out)
    else:
        print("upstream: none (alarms and work orders stay on this gateway)", file=out)
    enabled = [d for d in config.devices if d.enabled]
    points = sum(len(d.points) for d in enabled)
    derived = sum(len(d.derived) for d in enabled)
    print(f"{len(enabled)} device(s) enabled ({len(config.devices) - len(enabled)} disabled), "
          f"{points} point(s)" + (f" and {derived} derived" if derived else "") + ":", file=out)
    for line in [*describe_polling(config.devices), *describe_subscriptions(config)]:
        print(f"  {line}", file=out)
    for dev in enabled:
        if dev.derived:
            print(f"  {dev.id} derives {', '.join(d.name for d in dev.derived)}", file=out)
    print(f"{len(config.rules)} rule(s):", file=out)
    for rule in config.rules:
        targets = [d.id for d in config.rule_devices(rule)]
        print(f"  {rule.id}: {rule.priority} {rule.category}, on-delay {rule.for_:g}s, "
              f"devices {', '.join(targets) or 'none'}", file=out)


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
