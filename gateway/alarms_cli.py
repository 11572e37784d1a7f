"""``propgw alarms``: alarm-system KPIs from the alarm journal.

* ``propgw alarms report -c site.yaml [--since 24h]`` — alarms per hour and per day, floods,
  chattering and stale alarms, the ten most frequent, the priority mix, operator actions and
  the alarms' current states, from the journal the config names (``alarms.journal``).

The journal is opened read-only, so the report can run next to a running gateway.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.alarms import alarm_report, journal_path, render_report
from gateway.config import load_config, parse_duration

__all__ = ["add_alarms_parser", "run_alarms_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_alarms_parser(sub: Any) -> None:
    """Register ``propgw alarms`` and its sub-commands on the top-level sub-parser set."""
    alarms = sub.add_parser("alarms", help="alarm journal: KPIs report")
    alarms_sub = alarms.add_subparsers(dest="alarms_command", metavar="ALARMS_COMMAND",
                                       required=True)
    report = alarms_sub.add_parser(
        "report", help="alarm KPIs (ISA-18.2): rates, floods, chattering, stale, top 10, "
                       "priority mix")
    report.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                        help="site config (YAML); names the journal")
    report.add_argument("--since", default="24h", metavar="WHEN",
                        help="a duration back from now (24h, 7d, 90m) or an ISO 8601 time "
                             "(default 24h)")
    report.add_argument("--journal", type=Path, metavar="FILE",
                        help="read this journal file instead of the config's")
    report.add_argument("--stale-after", default="24h", metavar="DURATION",
                        help="an alarm active longer than this is stale (default 24h)")
    report.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_alarms_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``propgw alarms ...``; returns the exit status.

    Args:
        args: The parsed command line.
        out: Where the report goes (default standard output).

    Raises:
        ConfigError: the site config is broken (the caller prints it).
    """
    out = out or sys.stdout
    now = time.time()
    try:
        since = _parse_since(args.since, now)
        stale_after = float(parse_duration(args.stale_after))
    except ValueError as exc:
        print(f"propgw alarms: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    path = args.journal or journal_path(config)
    if path is None:
        print(f"propgw alarms: {args.config} keeps the alarm journal in memory (set state_dir "
              f"or alarms.journal.path), so there is nothing to report", file=sys.stderr)
        return EXIT_USAGE
    if not path.is_file():
        print(f"propgw alarms: no alarm journal at {path} (has the gateway run with this "
              f"config?)", file=sys.stderr)
        return EXIT_FAILED
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            report = alarm_report(conn, since=since, now=now, stale_after=stale_after)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(f"propgw alarms: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2), file=out)
    else:
        print(render_report(report, site=f"{config.site.id} ({config.site.name})"), file=out)
    return EXIT_OK


def _parse_since(text: str, now: float) -> float:
    try:
        return now - float(parse_duration(text))
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since wants a duration (24h, 7d) or an ISO 8601 time, got "
                         f"{text!r}") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is the local time of whoever runs the report
    return when.timestamp()
