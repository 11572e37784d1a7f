"""``propgw orders``: dispatch a work order, record its progress and its follow-up call, and
list the follow-ups due, through the running gateway's console API with an API token (as
``propgw reports`` does).

Exit status: 0 done; 1 the gateway refused (an unknown order, an order in the wrong state, a
token it does not know, a role below operator) or could not be reached; 2 the command line or
the site config cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any, TextIO

__all__ = ["add_orders_parser", "run_orders_async", "run_orders_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Sub-command -> the API's action path.
_STATUS = {"acknowledge": "acknowledge", "on-site": "on-site", "resolve": "resolve"}


def add_orders_parser(sub: Any) -> None:
    """Register ``propgw orders`` and its sub-commands on the top-level sub-parser set."""
    from gateway.alarms_cli import remote_options

    conn = remote_options()
    orders = sub.add_parser(
        "orders", help="dispatch work orders (派单), record on site / resolved (到场 / 完成) "
                       "and follow-up calls (回访), through the running gateway's API",
        description="Every sub-command talks to the running gateway's console API with an "
                    "API token (propgw users token): an operator's or above to change an "
                    "order, any user's to list the follow-ups.")
    orders_sub = orders.add_subparsers(dest="orders_command", metavar="ORDERS_COMMAND",
                                       required=True)
    assign = orders_sub.add_parser(
        "assign", parents=[conn], help="dispatch an order to a role and/or a named person",
        description="Dispatch an order (派单). The escalation ladder goes on until someone "
                    "acknowledges: dispatching is not acknowledging.")
    assign.add_argument("order_id", metavar="ORDER_ID")
    assign.add_argument("--role", metavar="ROLE",
                        help="a role id, e.g. control_room, patrol, engineering, supervisor")
    assign.add_argument("--person", metavar="NAME", help="a named person")
    assign.add_argument("--note", metavar="TEXT")
    assign.add_argument("--json", action="store_true", help="print the API's JSON")
    for name, help_text in (("acknowledge", "record that someone took the order on"),
                            ("on-site", "record that someone is on site (到场)"),
                            ("resolve", "record the order resolved (完成)")):
        status = orders_sub.add_parser(
            name, parents=[conn], help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}: what the platform's answer "
                        f"would do (window breaches, the follow-up date once resolved), "
                        f"recorded as yours.")
        status.add_argument("order_id", metavar="ORDER_ID")
        status.add_argument("--note", metavar="TEXT")
        status.add_argument("--json", action="store_true", help="print the API's JSON")
    follow = orders_sub.add_parser(
        "follow-up", parents=[conn], help="record a follow-up call (回访) of a resolved order",
        description="Record a follow-up call. --satisfied closes the order; --unsatisfied "
                    "reopens it (its windows and ladder start again); --not-reached leaves it "
                    "due.")
    follow.add_argument("order_id", metavar="ORDER_ID")
    outcome = follow.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--satisfied", dest="outcome", action="store_const",
                         const="satisfied", help="reached, and satisfied")
    outcome.add_argument("--unsatisfied", dest="outcome", action="store_const",
                         const="unsatisfied", help="reached, and not satisfied: reopens it")
    outcome.add_argument("--not-reached", dest="outcome", action="store_const",
                         const="not_reached", help="nobody answered")
    follow.add_argument("--comment", metavar="TEXT")
    follow.add_argument("--json", action="store_true", help="print the API's JSON")
    listing = orders_sub.add_parser(
        "follow-ups", parents=[conn], help="resolved orders whose follow-up is due (overdue "
                                           "first), and those coming up")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")


def run_orders_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``propgw orders ...`` to the end; returns the exit status."""
    import asyncio  # not at the top: `propgw --version` builds this parser and must stay light

    return asyncio.run(run_orders_async(args, out))


async def run_orders_async(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """:func:`run_orders_command` inside a running event loop (tests drive it next to a
    gateway)."""
    from gateway.terminal import ApiClient, with_gateway

    out = out or sys.stdout
    command: str = args.orders_command
    if command == "assign" and not (args.role or args.person):
        _complain(command, "give --role, --person or both")
        return EXIT_USAGE

    async def call(client: ApiClient) -> int:
        if command == "follow-ups":
            return await _follow_ups(client, args, out)
        order = await client.post(*_request(command, args))
        if args.json:
            print(json.dumps(order, ensure_ascii=False, indent=2), file=out)
        else:
            _print_order(order, args.lang == "zh", out)
        return EXIT_OK

    return await with_gateway(args, call, lambda message: _complain(command, message))


def _request(command: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    base = f"/api/v1/work-orders/{args.order_id}"
    if command == "assign":
        return f"{base}/assign", {"role": args.role, "person": args.person, "note": args.note}
    if command == "follow-up":
        reached = args.outcome != "not_reached"
        return f"{base}/follow-up", {
            "reached": reached, "satisfied": args.outcome == "satisfied" if reached else None,
            "comment": args.comment}
    return f"{base}/{_STATUS[command]}", {"note": args.note}


def _print_order(order: dict[str, Any], zh: bool, out: TextIO) -> None:
    from gateway.terminal import clean

    title = order["title"]["zh" if zh else "en"]
    print("  ".join(clean(str(x)) for x in (order["id"], order["seq"], order["event"],
                                            order["status"], title)), file=out)
    if order.get("follow_up_by") and order["status"] == "resolved":
        print(("回访时间 " if zh else "follow up by ") + order["follow_up_by"], file=out)
    esc = order.get("escalation") or {}
    if order["status"] == "open" and esc:
        who = (esc.get("name") or {}).get("zh" if zh else "en", "")
        print(("确认时限 " if zh else "acknowledge by ") + str(esc.get("deadline", ""))
              + (f"  · {who}" if who else ""), file=out)


async def _follow_ups(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    from gateway.terminal import clean, site_zone

    data = await client.get("/api/v1/follow-ups")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2), file=out)
        return EXIT_OK
    _, tz = await site_zone(client)
    zh = args.lang == "zh"
    if not data["due"] and not data["upcoming"]:
        print("没有待回访的工单" if zh else "no follow-ups due or coming up", file=out)
        return EXIT_OK
    for group, items in (("due", data["due"]), ("upcoming", data["upcoming"])):
        for item in items:
            order = item["order"]
            when = dt.datetime.fromisoformat(item["due_at"]).astimezone(tz).strftime(
                "%m-%d %H:%M")
            state = ("逾期" if zh else "OVERDUE") if item["overdue"] else \
                ("到期" if zh else "due") if group == "due" else ("未到" if zh else "later")
            tries = f"{item['attempts']}x" if item["attempts"] else ""
            # No contact on the terminal: a screen or a scroll-back is easily shared.
            print("  ".join(clean(str(x)) for x in (
                when, state, order["priority"], order["title"]["zh" if zh else "en"], tries,
                order["id"]) if x != ""), file=out)
    if data["overdue"]:
        print((f"逾期 {data['overdue']} 单" if zh else f"{data['overdue']} overdue"), file=out)
    return EXIT_OK


def _complain(command: str, message: str) -> None:
    print(f"propgw orders {command}: {message}", file=sys.stderr)
