"""``propgw check-config``: validate a site file, print warnings and what the gateway will do.

Errors (the gateway cannot run the file) exit 2; warnings (it can, but probably not as
meant) go to standard error and exit 0, or 2 with ``--strict``. Loads the config and the
polling plan only: no driver, broker client or HTTP code is imported, so it stays fast.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from gateway.config import Condition, GatewayConfig

__all__ = ["add_check_parser", "format_condition", "print_summary", "run_check_command"]

EXIT_OK = 0
EXIT_CONFIG = 2


def add_check_parser(sub: Any) -> None:
    """Register ``propgw check-config`` on the top-level sub-parser set."""
    check = sub.add_parser(
        "check-config", help="validate a config file and summarise it; exit 2 on any mistake",
        description="Validate a site config file and summarise what the gateway will do with "
                    "it. Mistakes exit 2; warnings (valid, but probably not meant) are "
                    "printed on standard error and exit 0 unless --strict.")
    check.add_argument("file", type=Path, metavar="FILE", nargs="?",
                       help="site config (YAML); or give it with -c")
    check.add_argument("-c", "--config", type=Path, metavar="FILE",
                       help="site config (YAML), as for `propgw run -c FILE`")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="also print each rule's condition")
    check.add_argument("--strict", action="store_true",
                       help="exit 2 on warnings too (for CI and before deploying)")
    check.set_defaults(check_parser=check)


def run_check_command(args: argparse.Namespace, out: TextIO | None = None,
                      err: TextIO | None = None) -> int:
    """Run ``propgw check-config``; a :class:`~gateway.errors.ConfigError` propagates."""
    from gateway.config import load_config
    from gateway.errors import ConfigProblem

    out = out or sys.stdout
    err = err or sys.stderr
    if args.file is not None and args.config is not None and args.file != args.config:
        args.check_parser.error("give the config file once: FILE or -c FILE")
    path = args.config or args.file
    if path is None:
        args.check_parser.error("the config file is missing: check-config FILE or -c FILE")
    warnings: list[ConfigProblem] = []
    config = load_config(path, warnings=warnings)
    summary = io.StringIO()
    print(f"{path}: OK", file=summary)
    print_summary(config, summary, verbose=args.verbose)
    for line in summary.getvalue().removesuffix("\n").split("\n"):
        print(_shown(line), file=out)
    out.flush()  # the summary first, then the warnings under it on a terminal
    for warning in warnings:
        print(f"warning: {warning}", file=err)
    if warnings:
        count = len(warnings)
        print(f"{path}: {count} warning{'s' if count != 1 else ''}"
              f"{' (--strict: failing)' if args.strict else ''}", file=err)
    return EXIT_CONFIG if warnings and args.strict else EXIT_OK


def _print_accounting(config: GatewayConfig, out: TextIO) -> None:
    acct = config.accounting
    if acct is None or not acct.enabled:
        return
    meters = [(d.id, sorted(set(acct.counters) & d.point_names()))
              for d in config.devices if d.enabled]
    meters = [(dev, points) for dev, points in meters if points]
    buildings = sorted({d.location.building for d in config.devices
                        if d.enabled and d.location.building
                        and set(acct.counters) & d.point_names()})
    print(f"accounting: {len(meters)} meter(s), per {' and '.join(acct.periods)} "
          f"({config.site.timezone}); buildings: "
          f"{', '.join(f'building.{b}' for b in buildings) or 'none'}", file=out)
    for dev, points in meters:
        print(f"  {dev}: {', '.join(points)}", file=out)


def print_summary(config: GatewayConfig, out: TextIO, *, verbose: bool = False) -> None:
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
    _print_telemetry(config, out)
    if config.influxdb:
        flux = config.influxdb
        print(f"influxdb: {flux.url} bucket {flux.bucket}, batches of {flux.batch_size} or "
              f"every {flux.batch_interval:g} s, buffer up to {flux.buffer.max_points} points",
              file=out)
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
    _print_accounting(config, out)
    print(f"{len(config.rules)} rule(s):", file=out)
    for rule in config.rules:
        targets = [d.id for d in config.rule_devices(rule)]
        print(f"  {rule.id}: {rule.priority} {rule.category}, on-delay {rule.for_:g}s, "
              f"devices {', '.join(targets) or 'none'}", file=out)
        if verbose:
            lines = format_condition(rule.when)
            print(f"    when {lines[0]}", file=out)
            for line in lines[1:]:
                print(f"    {line}", file=out)
    if config.metrics is not None and config.metrics.enabled:
        print(f"metrics: {_metrics_where(config)}", file=out)


def _metrics_where(config: GatewayConfig) -> str:
    """Where /metrics answers and whom, without loading the HTTP server's modules."""
    metrics = config.metrics
    assert metrics is not None
    console = config.console if config.console is not None and config.console.enabled else None
    status = config.upstream.status_api if config.upstream is not None else None
    host, port = ((console.host, console.port) if console is not None
                  else (status.host, status.port) if status is not None
                  else (metrics.host, metrics.port))
    token = ", bearer token" if metrics.token is not None else ""
    allow = ", ".join(str(n) for n in metrics.allow)
    return f"http://{host}:{port}/metrics for {allow}{token}"


def _print_telemetry(config: GatewayConfig, out: TextIO) -> None:
    tele = config.telemetry
    if tele is None or not tele.enabled:
        print("telemetry: off (no readings go upstream)", file=out)
        return
    from gateway.telemetry import Selection

    selection = Selection(tele, config.devices)
    enabled = [d for d in config.devices if d.enabled]
    names = [(d.id, p) for d in enabled for p in sorted(d.point_names())]
    chosen = sum(1 for dev, point in names if selection.spec(dev, point) is not None)
    d = tele.defaults
    where = []
    if config.upstream is not None and config.upstream.broker is not None:
        where.append(f"{config.upstream.topic_prefix}/{config.site.id}/telemetry/<device>")
    if config.upstream is not None and config.upstream.http is not None \
            and config.upstream.http.telemetry_url:
        where.append(config.upstream.http.telemetry_url)
    print(f"telemetry: {chosen} of {len(names)} point(s) by exception (deadband "
          f"{d.deadband:g} or {d.deadband_percent:g}%, min {_seconds(d.min_interval)}, "
          f"heartbeat {_seconds(d.max_interval)}, {len(tele.overrides)} override(s)) to "
          f"{' and '.join(where)}", file=out)


def format_condition(cond: Condition, indent: str = "  ") -> list[str]:
    """A condition as readable lines: one per leaf, ``all of:``/``any of:`` indenting."""
    from gateway.config import (
        AllCondition,
        AllDevicesCondition,
        AnyCondition,
        AnyDeviceCondition,
        DeviceRefCondition,
        NotCondition,
    )

    if isinstance(cond, DeviceRefCondition):
        inner = format_condition(cond.when, indent)
        if len(inner) == 1:
            return [f"on {cond.device}: {inner[0]}"]
        return [f"on {cond.device}:", *(indent + line for line in inner)]
    groups: list[tuple[type[Any], str, str]] = [
        (AllCondition, "all", "all of:"), (AnyCondition, "any", "any of:"),
    ]
    for model, attr, head in groups:
        if isinstance(cond, model):
            return [head, *(indent + line for member in getattr(cond, attr)
                            for line in format_condition(member, indent))]
    wrappers: list[tuple[type[Any], str, str]] = [
        (NotCondition, "not_", "not:"),
        (AllDevicesCondition, "all_devices", "on every device of the group:"),
        (AnyDeviceCondition, "any_device", "on at least one device of the group:"),
    ]
    for model, attr, head in wrappers:
        if isinstance(cond, model):
            return [head, *(indent + line for line in format_condition(getattr(cond, attr),
                                                                        indent))]
    return [_leaf(cond)]


# --------------------------------------------------------------------------- helpers

_OPERATORS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=",
              "in_": "in"}


def _leaf(cond: Any) -> str:
    from gateway.config import (
        BaselineCondition,
        CommLossCondition,
        CounterCondition,
        EdgeCondition,
        PointCondition,
        QualityCondition,
        RateCondition,
        ScheduleCondition,
        StaleCondition,
    )

    if isinstance(cond, QualityCondition):
        names = " or ".join(sorted(cond.qualities()))
        after = f" (no good reading for {_seconds(cond.after)})" if cond.after else ""
        return f"{cond.point or 'any point'} quality is {names}{after}"
    if isinstance(cond, PointCondition):
        op = next(o for o in _OPERATORS if getattr(cond, o) is not None)
        band = f" (deadband {cond.deadband:g})" if cond.deadband is not None else ""
        return f"{cond.point} {_OPERATORS[op]} {_value(getattr(cond, op))}{band}"
    if isinstance(cond, EdgeCondition):
        start = f" from {_value(cond.from_)}" if cond.from_ is not None else ""
        during = f" while ({'; '.join(format_condition(cond.while_, ''))})" \
            if cond.while_ is not None else ""
        return (f"{cond.point} changes{start} to {_value(cond.becomes)}{during}, "
                f"true for {_seconds(cond.hold)}")
    if isinstance(cond, StaleCondition):
        what = cond.point or "any point"
        return f"no good reading of {what} for {_seconds(cond.stale)}"
    if isinstance(cond, CommLossCondition):
        return f"{cond.point or 'the device'} does not answer (comm loss)"
    if isinstance(cond, RateCondition):
        for attr, words in (("rate_gt", "rises faster than"), ("rate_lt", "changes by less "
                            "than"), ("rate_abs_gt", "changes faster than ±")):
            limit = getattr(cond, attr)
            if limit is not None:
                return f"{cond.point} {words}{'' if words.endswith('±') else ' '}{limit:g} " \
                       f"per {_seconds(cond.per)}"
    if isinstance(cond, CounterCondition):
        reset = f", counting afresh when {_leaf(cond.reset)}" if cond.reset else ""
        return (f"at least {cond.at_least} {cond.mode} of {cond.point} == "
                f"{_value(cond.count)} within {_seconds(cond.within)}{reset}")
    if isinstance(cond, ScheduleCondition):
        return f"time of day {_window(cond.schedule)}"
    if isinstance(cond, BaselineCondition):
        during = f", learned {_window(cond.during)}" if cond.during else ""
        extra = f" and by at least {cond.min_excess:g}" if cond.min_excess else ""
        return (f"{cond.point} above {cond.above_baseline:g} x its baseline{extra} "
                f"(learned over {_seconds(cond.learn)}{during})")
    # A condition this printer does not know yet: its keys as written in YAML.
    fields = cond.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in fields.items()) + "}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _window(window: Any) -> str:
    days = f" on {', '.join(window.days)}" if window.days else ""
    return f"{window.from_}-{window.to}{days}"


def _shown(line: str) -> str:
    """Names come from the file: a terminal escape in one is shown, not obeyed."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)
