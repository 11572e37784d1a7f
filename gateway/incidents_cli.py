"""``propgw incidents review|summary``: incident reviews (事后复盘) and the monthly service
summary, read from the running gateway's console API with an API token (viewer or above).

* ``propgw incidents review ORDER_ID [--html FILE] [--json]`` — the timeline and the response
  windows' verdicts as text; ``--html`` writes the printable page (A4; print it to PDF from a
  browser for a file).
* ``propgw incidents summary [--month YYYY-MM] [--html FILE] [--json]`` — a month's orders.

Exit status: 0 done; 1 the gateway refused or could not be reached, or the file could not be
written; 2 the command line or the site config cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

__all__ = ["add_incidents_parser", "run_incidents_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_incidents_parser(sub: Any) -> None:
    """Register ``propgw incidents`` on the top-level sub-parser set."""
    from gateway.alarms_cli import remote_options

    conn = remote_options()
    incidents = sub.add_parser(
        "incidents", help="incident reviews (事后复盘) and the monthly summary, from the "
                          "running gateway's API",
        description="Both read the running gateway's console API with an API token "
                    "(propgw users token).")
    incidents_sub = incidents.add_subparsers(dest="incidents_command",
                                             metavar="INCIDENTS_COMMAND", required=True)
    review = incidents_sub.add_parser(
        "review", parents=[conn],
        help="one incident's timeline and response-window verdicts",
        description="The review of the incident behind a work order: from first detection "
                    "through every alarm transition, operator action, escalation step and "
                    "platform answer, in the site's time zone.")
    review.add_argument("order_id", metavar="ORDER_ID",
                        help="the work order's id (the console and `propgw alarms list "
                             "--json` show it)")
    _outputs(review)
    summary = incidents_sub.add_parser(
        "summary", parents=[conn],
        help="a month's work orders: by category and building, window compliance, response "
             "times")
    summary.add_argument("--month", metavar="YYYY-MM",
                         help="the calendar month in the site's time zone (default: this "
                              "month)")
    _outputs(summary)


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="write the printable page (A4) to FILE")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def run_incidents_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``propgw incidents ...``; returns the exit status.

    Raises:
        ConfigError: the site config is broken (the caller prints it).
    """
    import asyncio  # not at the top: `propgw --version` must not load it

    return asyncio.run(run_incidents_async(args, out))


async def run_incidents_async(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """:func:`run_incidents_command` inside a running event loop (tests)."""
    from gateway.review import IncidentReview, MonthlySummary, review_html, summary_html
    from gateway.terminal import ApiClient, with_gateway

    out = out or sys.stdout
    command: str = args.incidents_command
    lang = "zh-CN" if args.lang == "zh" else "en"

    async def call(client: ApiClient) -> int:
        if command == "review":
            body = await client.get(f"/api/v1/incidents/{quote(args.order_id, safe='')}"
                                    f"/review")
            review = IncidentReview.model_validate(body)
            page, text = review_html(review, lang), review_text(review, lang)
        else:
            query = urlencode({"month": args.month}) if args.month else ""
            body = await client.get(f"/api/v1/incidents/summary?{query}")
            summary = MonthlySummary.model_validate(body)
            page, text = summary_html(summary, lang), summary_text(summary, lang)
        return await _show(args, body, page, text, out)

    return await with_gateway(
        args, call, lambda message: print(f"propgw incidents {command}: {message}",
                                          file=sys.stderr))


async def _show(args: argparse.Namespace, body: Any, page: str, text: str,
                out: TextIO) -> int:
    """Write the printable page if asked for, and print the JSON or the text."""
    import asyncio

    command: str = args.incidents_command
    if args.html is not None:
        try:
            await asyncio.to_thread(args.html.write_text, page, encoding="utf-8")
        except OSError as exc:
            print(f"propgw incidents {command}: cannot write {args.html}: {exc.strerror}",
                  file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {args.html} (open it in a browser; print to PDF for a file)",
              file=sys.stderr)
    if args.json:
        print(json.dumps(body, ensure_ascii=False, indent=2), file=out)
    elif args.html is None:
        print(text, file=out)
    return EXIT_OK


def review_text(review: Any, lang: str) -> str:
    """The review as plain text for a terminal."""
    from gateway.review import duration

    zh = lang == "zh-CN"

    def t(text: Any) -> str:
        return str(text.zh if zh else text.en)

    lines = [f"{t(review.title)}  [{review.priority}]  {review.order_id}",
             f"{t(review.location)} · {review.site_name} · {review.timezone}", ""]
    for w in review.windows:
        took = duration(w.took_s, lang) if w.took_s is not None else "—"
        margin = duration(w.margin_s, lang) if w.margin_s is not None else ""
        lines.append(f"{t(w.name)}: {w.verdict} {margin}  ({took})".rstrip())
    lines.append("")
    for e in review.timeline:
        who = f"  [{e.actor}]" if e.actor else ""
        detail = f"  — {e.detail}" if e.detail else ""
        evidence = ("  (" + ", ".join(f"{k}={v}" for k, v in e.evidence.items()) + ")"
                    if e.evidence else "")
        lines.append(f"{e.at[11:19]}  {t(e.what)}{who}{detail}{evidence}")
    return "\n".join(lines)


def summary_text(summary: Any, lang: str) -> str:
    """The monthly summary as plain text for a terminal."""
    from gateway.review import duration

    zh = lang == "zh-CN"

    def t(text: Any) -> str:
        return str(text.zh if zh else text.en)

    lines = [f"{summary.site_name} {summary.month}: {summary.orders} orders, "
             f"{summary.incidents} P0/P1"]
    for w in summary.windows:
        rate = f"{w.compliance:.0%}" if w.compliance is not None else "—"
        lines.append(f"  {t(w.name)}: {rate} (met {w.met}, breached {w.breached}, overdue "
                     f"{w.overdue}, pending {w.pending})")
    for m in summary.times:
        mean = duration(m.mean_s, lang) if m.mean_s is not None else "—"
        p90 = duration(m.p90_s, lang) if m.p90_s is not None else "—"
        lines.append(f"  {t(m.name)}: n={m.count} mean {mean} p90 {p90}")
    for c in summary.by_category:
        lines.append(f"  {t(c.name)}: {c.orders} ({c.incidents} P0/P1)")
    return "\n".join(lines)
