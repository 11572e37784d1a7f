"""The monthly summary: a calendar month's work orders (site time zone) by priority, category
and building, how each response window went, and the times to acknowledge, reach the site and
resolve (mean and 90th percentile).

Built from the latest version of each order in the work-order history; orders count in the
month they were raised in. Reported repairs count by category, building and channel;
follow-up calls (回访) by outcome, with the orders still waiting for theirs and how many of
those are overdue at ``now``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from gateway.config import GatewayConfig
from gateway.i18n import category_title
from gateway.review._build import window_verdicts
from gateway.review._labels import CHANNEL, WINDOW, local_iso, text
from gateway.review._model import (
    Count,
    FollowUpStats,
    IncidentLine,
    MonthlySummary,
    ReportStats,
    TimeStats,
    WindowStats,
)
from gateway.workorders import Bilingual, WorkOrder, WorkOrderLog, parse_instant

__all__ = ["gather_summary", "month_range", "monthly_summary"]

#: Orders read for one month, at most.
_MAX_ORDERS = 100_000
_INCIDENT = frozenset({"P0", "P1"})
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_range(month: str, timezone: str) -> tuple[float, float]:
    """Start and end (epoch seconds) of ``YYYY-MM`` in ``timezone``.

    Raises:
        ValueError: not a month written ``YYYY-MM``.
    """
    match = _MONTH.fullmatch(month)
    if match is None or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2999:
        raise ValueError(f"expected a month such as 2026-12, got {month!r}")
    year, number = int(match[1]), int(match[2])
    zone = ZoneInfo(timezone)
    start = dt.datetime(year, number, 1, tzinfo=zone)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


async def gather_summary(month: str, *, worklog: WorkOrderLog, config: GatewayConfig,
                         now: float) -> MonthlySummary:
    """Read the month's orders from the history and summarise them.

    Raises:
        ValueError: ``month`` is not ``YYYY-MM``.
        WorkOrderLogError: the history cannot be read.
    """
    start, _ = month_range(month, config.site.timezone)
    orders = await worklog.recent(_MAX_ORDERS, since=start)
    return monthly_summary(month, orders, config=config, now=now)


def monthly_summary(month: str, orders: Iterable[WorkOrder], *, config: GatewayConfig,
                    now: float) -> MonthlySummary:
    """Summarise the orders raised in ``month`` (others in ``orders`` are skipped)."""
    zone = ZoneInfo(config.site.timezone)
    start, end = month_range(month, config.site.timezone)
    chosen = sorted((o for o in orders if start <= parse_instant(o.raised_at) < end),
                    key=lambda o: o.raised_at)
    policies = config.work_orders
    verdicts = {o.id: window_verdicts(o, zone=zone, now=now) for o in chosen}
    windows: list[WindowStats] = []
    times: list[TimeStats] = []
    for index, window in enumerate(("acknowledge", "on_site", "resolve")):
        tally = Counter(verdicts[o.id][index].verdict for o in chosen)
        ended = tally["met"] + tally["breached"] + tally["overdue"]
        windows.append(WindowStats(
            window=window, name=WINDOW[window], met=tally["met"], breached=tally["breached"],
            overdue=tally["overdue"], pending=tally["pending"],
            compliance=round(tally["met"] / ended, 4) if ended else None))
        took = sorted(t for o in chosen if (t := verdicts[o.id][index].took_s) is not None)
        times.append(TimeStats(measure=window, name=WINDOW[window], count=len(took),
                               mean_s=round(sum(took) / len(took), 1) if took else None,
                               p90_s=_nearest_rank(took, 0.9)))
    incidents = [o for o in chosen if o.priority in _INCIDENT]

    def category(key: str) -> Bilingual:
        return text(category_title(key, "zh-CN", policies), category_title(key, "en", policies))

    reports = [o for o in chosen if o.source == "report"]
    return MonthlySummary(
        month=month, timezone=config.site.timezone, site_name=config.site.name,
        orders=len(chosen), incidents=len(incidents),
        by_priority=_counts(chosen, lambda o: o.priority, lambda k: text(k, k)),
        by_category=_counts(chosen, lambda o: o.category, category),
        by_building=_counts(chosen, lambda o: o.location.building or "", building),
        windows=windows, times=times,
        incident_list=[IncidentLine(
            order_id=o.id, priority=o.priority, title=o.title,
            raised_at=local_iso(parse_instant(o.raised_at), zone), status=o.status,
            breaches=[v.window for v in verdicts[o.id] if v.verdict in ("breached", "overdue")])
            for o in incidents],
        reports=ReportStats(
            reports=len(reports), by_category=_counts(reports, lambda o: o.category, category),
            by_building=_counts(reports, lambda o: o.location.building or "", building),
            by_channel=_counts(reports, lambda o: o.report.channel if o.report else "other",
                               lambda k: CHANNEL.get(k, text(k, k)))),
        follow_ups=follow_up_stats(chosen, now=now),
        generated_at=local_iso(now, zone))


def building(key: str) -> Bilingual:
    return text(key or "（未注明）", key or "(not given)")


def follow_up_stats(orders: Sequence[WorkOrder], *, now: float) -> FollowUpStats:
    """The follow-up calls recorded on ``orders`` (latest versions) and those still owed."""
    calls = [f for o in orders for f in o.follow_ups]
    reached = [f for f in calls if f.reached]
    satisfied = sum(1 for f in reached if f.satisfied)
    waiting = [o for o in orders if o.status == "resolved" and o.follow_up_by is not None
               and not any(f.reached and f.satisfied for f in o.follow_ups)]
    overdue = sum(1 for o in waiting
                  if o.follow_up_overdue_at and parse_instant(o.follow_up_overdue_at) <= now)
    return FollowUpStats(
        calls=len(calls), orders_followed_up=sum(1 for o in orders if o.follow_ups),
        reached=len(reached), satisfied=satisfied, unsatisfied=len(reached) - satisfied,
        not_reached=len(calls) - len(reached), waiting=len(waiting), overdue=overdue,
        satisfaction=round(satisfied / len(reached), 4) if reached else None)


def _counts(orders: Sequence[WorkOrder], key: Callable[[WorkOrder], str],
            name: Callable[[str], Bilingual]) -> list[Count]:
    total = Counter(key(o) for o in orders)
    serious = Counter(key(o) for o in orders if o.priority in _INCIDENT)
    return [Count(key=k, name=name(k), orders=n, incidents=serious[k])
            for k, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def _nearest_rank(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)
