"""``propgw reports add|list``: log a reported repair and list the reported repairs, through
the running gateway's console API with an API token (as ``propgw alarms`` does).

Exit status: 0 done; 1 the gateway refused (unknown category or device, a priority change
without a reason, a token it does not know, a role below operator) or could not be reached;
2 the command line or the site config cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import uuid
from typing import Any, TextIO

__all__ = ["add_reports_parser", "run_reports_async", "run_reports_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_CHANNELS = ("phone", "patrol", "walk_in", "app", "email", "other")


def add_reports_parser(sub: Any) -> None:
    """Register ``propgw reports`` and its sub-commands on the top-level sub-parser set."""
    from gateway.alarms_cli import remote_options

    conn = remote_options()
    reports = sub.add_parser(
        "reports", help="log reported repairs (报事报修) and list them, through the running "
                        "gateway's API",
        description="add and list talk to the running gateway's console API with an API "
                    "token of an operator or above (propgw users token).")
    reports_sub = reports.add_subparsers(dest="reports_command", metavar="REPORTS_COMMAND",
                                         required=True)
    add = reports_sub.add_parser(
        "add", parents=[conn], help="log a report: its category grades it and it becomes a "
                                    "work order",
        description="Log a report. The category (see `propgw reports categories`) sets the "
                    "priority, and so the response windows and escalation ladder.")
    add.add_argument("category", help="a category of the site's report catalogue, e.g. "
                                      "water_leak")
    add.add_argument("description", help="what was reported")
    add.add_argument("--channel", choices=_CHANNELS, default="phone",
                     help="how it reached the control room (default phone)")
    add.add_argument("--building", metavar="TEXT")
    add.add_argument("--floor", metavar="TEXT")
    add.add_argument("--room", metavar="TEXT")
    add.add_argument("--device", metavar="ID", help="a device id; its location fills in the "
                                                     "rest")
    add.add_argument("--reporter", metavar="NAME")
    add.add_argument("--contact", metavar="PHONE",
                     help="personal data: masked upstream and in logs unless the site shares "
                          "it")
    add.add_argument("--priority", choices=["P0", "P1", "P2", "P3"],
                     help="override the category's priority (needs --reason)")
    add.add_argument("--reason", metavar="TEXT", help="why the priority was changed")
    add.add_argument("--json", action="store_true", help="print the API's JSON")
    listing = reports_sub.add_parser("list", parents=[conn],
                                     help="reported repairs, newest first")
    listing.add_argument("--open", action="store_true",
                         help="only those the gateway still works on")
    listing.add_argument("--hours", type=float, default=168.0,
                         help="updated in the last HOURS (default 168)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    reports_sub.add_parser("categories", parents=[conn],
                           help="the report catalogue and the priority of each category")


def run_reports_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``propgw reports ...`` to the end; returns the exit status."""
    import asyncio  # not at the top: `propgw --version` builds this parser and must stay light

    return asyncio.run(run_reports_async(args, out))


async def run_reports_async(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """:func:`run_reports_command` inside a running event loop (tests drive it next to a
    gateway)."""
    from gateway.terminal import ApiClient, with_gateway

    out = out or sys.stdout
    command: str = args.reports_command

    async def call(client: ApiClient) -> int:
        if command == "add":
            return await _add(client, args, out)
        if command == "list":
            return await _list(client, args, out)
        return await _categories(client, args, out)

    return await with_gateway(args, call, lambda message: _complain(command, message))


async def _add(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    if args.priority and not (args.reason or "").strip():
        _complain("add", "--priority needs --reason (it is recorded on the work order)")
        return EXIT_USAGE
    body = {k: v for k, v in {
        "category": args.category, "description": args.description, "channel": args.channel,
        "building": args.building, "floor": args.floor, "room": args.room,
        "device": args.device, "reporter": args.reporter, "contact": args.contact,
        "priority": args.priority, "priority_reason": args.reason}.items() if v is not None}
    # One key per command: a retried request cannot log the report twice.
    order = await client.post("/api/v1/reports", body,
                              headers={"Idempotency-Key": str(uuid.uuid4())})
    if args.json:
        print(json.dumps(order, ensure_ascii=False, indent=2), file=out)
        return EXIT_OK
    zh = args.lang == "zh"
    title = order["title"]["zh" if zh else "en"]
    print(f"{order['id']}  {order['priority']}  {title}", file=out)
    esc = order.get("escalation") or {}
    who = (esc.get("name") or {}).get("zh" if zh else "en", "")
    print(("到场时限 " if zh else "respond by ") + order["respond_by"]
          + (f"  · {who}" if who else ""), file=out)
    return EXIT_OK


async def _list(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    from gateway.terminal import clean, site_zone

    scope = "open" if args.open else "recent"
    data = await client.get(f"/api/v1/reports?scope={scope}&hours={args.hours:g}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2), file=out)
        return EXIT_OK
    _, tz = await site_zone(client)
    zh = args.lang == "zh"
    orders = data.get("orders", [])
    if not orders:
        print("没有报事报修" if zh else "no reported repairs", file=out)
        return EXIT_OK
    for o in orders:
        when = dt.datetime.fromisoformat(o["raised_at"]).astimezone(tz).strftime("%m-%d %H:%M")
        esc = o.get("escalation") or {}
        level = f"{esc.get('level', '-')}/{esc.get('levels', '-')}"
        report = o.get("report") or {}
        # No contact on the terminal: a screen or a scroll-back is easily shared.
        print("  ".join(clean(str(x)) for x in (
            when, o["priority"], o["status"], level, o["title"]["zh" if zh else "en"],
            report.get("channel", ""), report.get("operator", ""), o["id"])), file=out)
    return EXIT_OK


async def _categories(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    data = await client.get("/api/v1/report-categories")
    zh = args.lang == "zh"
    for c in data.get("categories", []):
        print(f"{c['id']}  {c['priority']}  {c['title']['zh' if zh else 'en']}", file=out)
    return EXIT_OK


def _complain(command: str, message: str) -> None:
    print(f"propgw reports {command}: {message}", file=sys.stderr)
