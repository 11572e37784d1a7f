"""``propgw alarms``: the running gateway's alarm board and operator actions, and alarm-system
KPIs from the alarm journal.

* ``propgw alarms list|ack|shelve|unshelve|reset|oos|return|comment|watch`` — through the
  running gateway's console API with an API token (:mod:`gateway.terminal`).
* ``propgw alarms report -c site.yaml [--since 24h]`` — alarms per hour and per day (averages
  only once the journal covers an hour, a day), floods, chattering and stale alarms, the ten
  most frequent, the priority mix, operator actions, and every alarm that is not normal now,
  in the site's time zone, from the journal the config names (``alarms.journal``). The journal
  is opened read-only, so the report can run next to a running gateway.
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

__all__ = ["add_alarms_parser", "connection_parser", "run_alarms_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_alarms_parser(sub: Any) -> None:
    """Register ``propgw alarms`` and its sub-commands on the top-level sub-parser set."""
    alarms = sub.add_parser(
        "alarms", help="the live alarm board and operator actions (through the running "
                       "gateway's API), and the journal's KPIs",
        description="list, ack, shelve, unshelve, reset, oos, return, comment and watch talk "
                    "to the running gateway's console API with an API token (propgw users "
                    "token); report reads the alarm journal file.")
    alarms_sub = alarms.add_subparsers(dest="alarms_command", metavar="ALARMS_COMMAND",
                                       required=True)
    _add_remote_parsers(alarms_sub)
    report = alarms_sub.add_parser(
        "report", help="alarm KPIs (ISA-18.2): rates, floods, chattering, stale, top 10, "
                       "priority mix, the alarms not normal now; in the site's time zone")
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
    if args.alarms_command != "report":
        from gateway.terminal import run_remote

        return run_remote(args, out)
    # Imported here, not at the top: the parser of every `propgw` command is built from this
    # module, and `propgw --version` must not load the config models or the alarm stage.
    from gateway.alarms import alarm_report, journal_path, render_report
    from gateway.config import load_config, parse_duration

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
            report = alarm_report(conn, since=since, now=now, stale_after=stale_after,
                                  timezone=config.site.timezone)
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


def connection_parser() -> argparse.ArgumentParser:
    """The options saying how to reach the running gateway's API (a parent parser, shared
    with ``propgw reports``)."""
    conn = argparse.ArgumentParser(add_help=False)
    where = conn.add_argument_group("connection (to the running gateway)")
    where.add_argument("-c", "--config", type=Path, metavar="FILE",
                       help="site config (YAML): the console's address is taken from it")
    where.add_argument("--url", metavar="URL",
                       help="the console's address instead, e.g. http://127.0.0.1:8480 "
                            "(default: $PROPGW_URL, else from -c)")
    where.add_argument("--token-file", type=Path, metavar="FILE",
                       help="read the API token from FILE (mode 0600); default: "
                            "$PROPGW_TOKEN")
    where.add_argument("--token", metavar="TOKEN",
                       help="the API token itself (shows in `ps`: prefer $PROPGW_TOKEN or "
                            "--token-file)")
    where.add_argument("--cafile", type=Path, metavar="FILE",
                       help="trust this CA (or certificate) for https")
    where.add_argument("--timeout", type=_positive, default=10.0, metavar="S",
                       help="seconds to wait for an answer (default 10)")
    conn.add_argument("--lang", choices=["zh", "en"], default="zh",
                      help="language of the board: zh (default) or en")
    return conn


def _add_remote_parsers(alarms_sub: Any) -> None:
    conn = connection_parser()

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = alarms_sub.add_parser(
            name, help=help_text, description=help_text, parents=[conn])
        return parser

    listing = command("list", "the alarm board: every alarm that is not plain normal, life "
                              "safety first")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    watch = command("watch", "the alarm board live (q or Ctrl-C quits); one line per event "
                             "when the output is not a terminal")
    watch.add_argument("--lines", action="store_true",
                       help="one line per event even on a terminal")

    ack = command("ack", "acknowledge alarms")
    _ids(ack)
    ack.add_argument("--comment", default="", metavar="TEXT", help="journaled with it")
    shelve = command("shelve", "shelve alarms for a while, with a reason (never a P0)")
    _ids(shelve)
    shelve.add_argument("--reason", required=True, metavar="TEXT")
    shelve.add_argument("--for", dest="duration", metavar="DURATION",
                        help="how long, e.g. 30m or 2h (default: the site's alarms.shelve_max)")
    shelve.add_argument("--one-shot", action="store_true",
                        help="unshelve at the alarm's next return to normal")
    for name, text in (("unshelve", "unshelve alarms"),
                       ("reset", "reset latched alarms that were acknowledged"),
                       ("return", "return out-of-service alarms to service (engineers)")):
        parser = command(name, text)
        _ids(parser)
        parser.add_argument("--reason", default="", metavar="TEXT", help="journaled with it")
    oos = command("oos", "take alarms out of service for maintenance, with a reason "
                         "(engineers)")
    _ids(oos)
    oos.add_argument("--reason", required=True, metavar="TEXT")
    comment = command("comment", "add a comment to an alarm's journal")
    comment.add_argument("alarm_ids", nargs=1, metavar="ALARM_ID")
    comment.add_argument("text", metavar="TEXT")


def _ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("alarm_ids", nargs="+", metavar="ALARM_ID",
                        help="as `propgw alarms list` shows it, e.g. trapped@E1")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"between 0 and 3600 seconds, got {text!r}")
    return value


def _parse_since(text: str, now: float) -> float:
    from gateway.config import parse_duration

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
