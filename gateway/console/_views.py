"""The console's REST API, one view per resource; the OpenAPI document is generated from these
signatures and the models in :mod:`gateway.console._schema`.

Who may call what is decided before the body is read (:data:`ROUTES`, checked by the server);
a view only needs to know who the user is (``request[USER]``) to journal the action.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_pydantic import PydanticView
from aiohttp_pydantic.oas.typing import r200, r400, r403, r404, r409, r503

from gateway import __version__
from gateway.alarms import AlarmEvent, alarm_report
from gateway.config import REPORT_CHANNELS
from gateway.console._auth import COOKIE, USER, Access
from gateway.console._schema import (
    AckBody,
    ActionError,
    AlarmList,
    AlarmView,
    AssignBody,
    CommentBody,
    DeviceList,
    ErrorBody,
    FollowUpBody,
    FollowUpItem,
    FollowUpList,
    HistoryEvent,
    HistoryPage,
    NoteBody,
    ReasonBody,
    ReportBody,
    ReportCatalogue,
    ReportCategoryView,
    ShelveBody,
    SiteView,
    Text,
    WorkOrderList,
    iso,
    order_json,
)
from gateway.console._service import BACKEND, CONSOLE
from gateway.console._users import User
from gateway.errors import (
    AlarmActionRejected,
    JournalError,
    UnknownAlarm,
    WorkOrderActionRefused,
    WorkOrderLogError,
)
from gateway.review import (
    IncidentReview,
    MonthlySummary,
    gather_review,
    gather_summary,
    review_html,
    summary_html,
)
from gateway.workorders import (
    EdgeStatus,
    ReportRefused,
    WorkOrder,
    grade_report,
    parse_instant,
    shareable,
)

__all__ = ["ROUTES", "VIEWS"]


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _user(request: web.Request) -> User:
    return request[USER]


# --------------------------------------------------------------------------- site, alarms


class SiteResource(PydanticView):
    async def get(self) -> r200[SiteView]:
        """Who this gateway is: site, time zone, version, category titles; whether any user
        exists yet, and whether this browser is logged in (so that a login page needs no
        refused request to find out).

        Tags: site
        """
        backend, console = self.request.app[BACKEND], self.request.app[CONSOLE]
        site = backend.config.site
        cookie = self.request.cookies.get(COOKIE)
        return _json(SiteView(id=site.id, name=site.name, gateway_id=site.gateway_id,
                              timezone=site.timezone, version=__version__,
                              users_configured=await console.users_configured(),
                              logged_in=cookie is not None
                              and console.sessions.get(cookie) is not None,
                              categories=console.category_titles()))


class AlarmsResource(PydanticView):
    async def get(self) -> r200[AlarmList]:
        """Every alarm that is not plain normal: active, unacknowledged, latched, shelved,
        suppressed or out of service; plus the alarm flood under way, if any.

        Tags: alarms
        """
        console = self.request.app[CONSOLE]
        return _json(AlarmList(alarms=console.alarm_views(), flood=console.flood()))


class AlarmResource(PydanticView):
    async def get(self, alarm_id: str, /) -> r200[AlarmView] | r404[ErrorBody]:
        """One alarm, whatever its state.

        Tags: alarms
        """
        view = self.request.app[CONSOLE].alarm_view(alarm_id)
        if view is None:
            return error(404, f"no alarm {alarm_id}")
        return _json(view)


async def _act(request: web.Request, action: str, alarm_id: str,
               run: Callable[[str], Awaitable[list[AlarmEvent]]]) -> web.Response:
    try:
        await run(_user(request).name)
    except UnknownAlarm:
        return error(404, f"no alarm {alarm_id}")
    except AlarmActionRejected as exc:
        return web.json_response(ActionError(error=exc.reason, action=action,
                                             alarm_id=alarm_id).model_dump(), status=409)
    except JournalError as exc:
        return error(503, f"the action could not be journaled, so it was not done: {exc}")
    view = request.app[CONSOLE].alarm_view(alarm_id)
    return _json(view) if view is not None else web.json_response({"alarm_id": alarm_id})


class AcknowledgeAction(PydanticView):
    async def post(self, alarm_id: str, /, body: AckBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Acknowledge an unacknowledged alarm (active, returned or latched).

        Tags: alarm actions
        Status Codes:
          200: done; the alarm as it is now
          409: the lifecycle refused; 'error' says why
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "acknowledge", alarm_id, lambda actor: actions.acknowledge(
            alarm_id, actor=actor, comment=body.comment))


class ShelveAction(PydanticView):
    async def post(self, alarm_id: str, /, body: ShelveBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Shelve an alarm for a while (never a P0), with a reason.

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "shelve", alarm_id, lambda actor: actions.shelve(
            alarm_id, actor=actor, reason=body.reason, duration=body.duration_s,
            one_shot=body.one_shot))


class UnshelveAction(PydanticView):
    async def post(self, alarm_id: str, /, body: ReasonBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Unshelve a shelved alarm.

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "unshelve", alarm_id, lambda actor: actions.unshelve(
            alarm_id, actor=actor, reason=body.reason))


class ResetAction(PydanticView):
    async def post(self, alarm_id: str, /, body: ReasonBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Reset a latched alarm that has been acknowledged.

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "reset", alarm_id, lambda actor: actions.reset(
            alarm_id, actor=actor, reason=body.reason))


class RemoveFromServiceAction(PydanticView):
    async def post(self, alarm_id: str, /, body: ReasonBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Take an alarm out of service for maintenance (engineers), with a reason.

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "remove-from-service", alarm_id,
                          lambda actor: actions.remove_from_service(alarm_id, actor=actor,
                                                                    reason=body.reason))


class ReturnToServiceAction(PydanticView):
    async def post(self, alarm_id: str, /, body: ReasonBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Return an out-of-service alarm to service (engineers).

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "return-to-service", alarm_id,
                          lambda actor: actions.return_to_service(alarm_id, actor=actor,
                                                                  reason=body.reason))


class CommentAction(PydanticView):
    async def post(self, alarm_id: str, /, body: CommentBody) -> (
            r200[AlarmView] | r404[ErrorBody] | r409[ActionError] | r403[ErrorBody]
            | r503[ErrorBody]):
        """Add a comment to an alarm's journal.

        Tags: alarm actions
        """
        actions = self.request.app[BACKEND].actions
        return await _act(self.request, "comment", alarm_id, lambda actor: actions.comment(
            alarm_id, actor=actor, text=body.text))


# --------------------------------------------------------------------------- work orders, devices


class WorkOrdersResource(PydanticView):
    async def get(self, scope: Literal["open", "recent"] = "open", hours: float = 168.0,
                  limit: int = 200) -> r200[WorkOrderList] | r400[ErrorBody] | r503[ErrorBody]:
        """Work orders, latest version of each, newest first.

        ``scope=open``: the orders the gateway still works on (escalating, or waiting for a
        follow-up). ``scope=recent``: every order updated in the last ``hours``, closed ones
        included, from the work-order history.

        Tags: work orders
        """
        if not 0 < hours <= 24 * 366 or not 1 <= limit <= _MAX_PAGE:
            return error(400, f"hours must be in (0, 8784] and limit in [1, {_MAX_PAGE}]")
        backend = self.request.app[BACKEND]
        if scope == "open":
            orders = sorted(backend.desk.open_orders, key=lambda o: o.raised_at,
                            reverse=True)[:limit]
        else:
            try:
                orders = await backend.worklog.recent(
                    limit, since=backend.clock.time() - hours * 3600.0)
            except WorkOrderLogError as exc:
                return error(503, f"the work-order history cannot be read: {exc}")
        # Viewers may read this list: a reporter's contact is masked unless shared.
        share = backend.config.reports.share_contact
        return _json(WorkOrderList(orders=[order_json(shareable(o, share)) for o in orders]))


class WorkOrderResource(PydanticView):
    async def get(self, order_id: str, /) -> (r200[dict[str, Any]] | r404[ErrorBody]
                                             | r503[ErrorBody]):
        """One work order, latest version, with every earlier version in ``versions`` (its
        timeline: raised, escalations, pre-alerts, the platform's answers, cleared).

        Tags: work orders
        """
        return await _order_with_versions(self.request, order_id, source=None, masked=True)


# --------------------------------------------------------------------------- dispatch, follow-up


async def _order_action(request: web.Request, order_id: str, action: str,
                        run: Callable[[str], Awaitable[WorkOrder]]) -> web.Response:
    """Run an operator's action on a work order as the logged-in user; the order after it
    (the operator sees the reporter's contact: they call back)."""
    try:
        order = await run(_user(request).name)
    except WorkOrderActionRefused as exc:
        status = 404 if exc.unknown else 409
        return web.json_response({"error": exc.reason, "action": action,
                                  "order_id": order_id}, status=status)
    except WorkOrderLogError as exc:
        return error(503, f"the work order could not be recorded: {exc}")
    return web.json_response(order_json(order))


class AssignAction(PydanticView):
    async def post(self, order_id: str, /, body: AssignBody) -> (
            r200[dict[str, Any]] | r400[ErrorBody] | r403[ErrorBody] | r404[ErrorBody]
            | r409[ErrorBody]):
        """Dispatch a work order (派单) to a role, a named person or both. The escalation
        ladder goes on until someone acknowledges: an assignment is not an acknowledgement.
        Goes upstream as event ``assigned``.

        Tags: work orders
        Status Codes:
          200: the work order, latest version
          404: the gateway does not track this order (unknown, closed or forgotten)
          409: the order is resolved; 'error' says its state
        """
        desk = self.request.app[BACKEND].desk
        return await _order_action(self.request, order_id, "assign", lambda by: desk.assign(
            order_id, by=by, role=body.role, person=body.person, note=body.note))


def _status_action(status: EdgeStatus, summary: str) -> type[PydanticView]:
    async def post(self: PydanticView, order_id: str, /, body: NoteBody) -> (
            r200[dict[str, Any]] | r403[ErrorBody] | r404[ErrorBody] | r409[ErrorBody]):
        desk = self.request.app[BACKEND].desk
        return await _order_action(self.request, order_id, status,
                                   lambda by: desk.record_status(order_id, status, by=by,
                                                                 note=body.note))

    post.__doc__ = f"""{summary} Exactly what the platform's answer would do (the response
        windows' breaches, the follow-up date once resolved), with ``status_via: console`` and
        ``status_by`` the operator's user name.

        Tags: work orders
        Status Codes:
          200: the work order, latest version
          404: the gateway does not track this order (unknown, closed or forgotten)
          409: the order is already at or past this state; 'error' says which
        """
    return type(f"{status.title().replace('_', '')}OrderAction", (PydanticView,),
                {"post": post})


OrderAcknowledgeAction = _status_action(
    "acknowledged", "Record that the order was acknowledged (someone took it on).")
OrderOnSiteAction = _status_action("on_site", "Record that someone is on site (到场).")
OrderResolveAction = _status_action("resolved", "Record the order resolved (完成).")


class FollowUpAction(PydanticView):
    async def post(self, order_id: str, /, body: FollowUpBody) -> (
            r200[dict[str, Any]] | r400[ErrorBody] | r403[ErrorBody] | r404[ErrorBody]
            | r409[ErrorBody]):
        """Record a follow-up call (回访) of a resolved order, due or not yet due. Reached and
        satisfied: the order is closed for good. Reached and unsatisfied: it is reopened
        (event ``reopened``, status open, its windows and escalation ladder counted again from
        now). Not reached: it stays due (``attempts`` in GET /api/v1/follow-ups).

        Tags: work orders
        Status Codes:
          200: the work order, latest version
          400: reached without satisfied, or satisfied without reached
          404: the gateway does not track this order (unknown, closed or forgotten)
          409: the order is not resolved, or has no follow-up
        """
        desk = self.request.app[BACKEND].desk
        return await _order_action(self.request, order_id, "follow-up",
                                   lambda by: desk.record_follow_up(
                                       order_id, by=by, reached=body.reached,
                                       satisfied=body.satisfied, comment=body.comment))


class FollowUpsResource(PydanticView):
    async def get(self) -> r200[FollowUpList]:
        """Resolved work orders waiting for their follow-up call (回访): ``due`` (overdue ones
        first, then the oldest due first) and ``upcoming`` (soonest first), with how many are
        overdue (not recorded within work_orders follow_up_within of falling due). A
        reporter's contact is shown to operators and above (they make the call), masked for
        viewers unless the site shares it.

        Tags: work orders
        """
        backend = self.request.app[BACKEND]
        now = backend.clock.time()
        share = backend.config.reports.share_contact or _user(self.request).can("operator")
        due: list[tuple[bool, float, FollowUpItem]] = []
        upcoming: list[tuple[float, FollowUpItem]] = []
        for order in backend.desk.follow_ups():
            assert order.follow_up_by is not None
            due_at = parse_instant(order.follow_up_by)
            overdue_at = parse_instant(order.follow_up_overdue_at) \
                if order.follow_up_overdue_at else due_at + backend.config.work_orders \
                .report_policy(order.category, order.priority).follow_up_within
            since = parse_instant(order.resolved_at) if order.resolved_at else 0.0
            item = FollowUpItem(
                order=order_json(shareable(order, share)), due_at=order.follow_up_by,
                overdue_at=iso(overdue_at) or "", overdue=overdue_at <= now,
                attempts=sum(1 for f in order.follow_ups if parse_instant(f.at) >= since))
            if due_at <= now:
                due.append((not item.overdue, due_at, item))
            else:
                upcoming.append((due_at, item))
        due.sort(key=lambda x: (x[0], x[1]))
        upcoming.sort(key=lambda x: x[0])
        return _json(FollowUpList(due=[i for *_, i in due], upcoming=[i for _, i in upcoming],
                                  overdue=sum(1 for *_, i in due if i.overdue),
                                  now=iso(now) or ""))


# --------------------------------------------------------------------------- reported repairs


class ReportCategoriesResource(PydanticView):
    async def get(self) -> r200[ReportCatalogue]:
        """The report catalogue: each category with its title and the priority it grades a
        report with; and the channels a report can come by.

        Tags: reports
        """
        reports = self.request.app[BACKEND].config.reports
        return _json(ReportCatalogue(
            categories=[ReportCategoryView(id=name, title=Text(zh=c.title.zh, en=c.title.en),
                                           priority=c.priority)
                        for name, c in reports.enabled().items()],
            channels=list(REPORT_CHANNELS)))


class ReportsResource(PydanticView):
    async def post(self, body: ReportBody, *, idempotency_key: str | None = None
                   ) -> (r200[dict[str, Any]] | r400[ErrorBody] | r403[ErrorBody]
                         | r503[ErrorBody]):
        """Log a reported repair (a resident's call, a patrol's finding, a walk-in). Its
        category grades it; it becomes a work order with the same windows, escalation ladder
        and upstream delivery as an alarm's (``source: report``). The operator's name is
        recorded on it, and with a changed priority, the reason.

        Send an ``Idempotency-Key`` header (e.g. a UUID per report) to make a retry safe:
        while the gateway tracks the order it raised (until its follow-up is
        recorded), the same key returns that order.

        Tags: reports
        Status Codes:
          200: logged; the work order raised (or, for a known Idempotency-Key, returned)
          400: unknown category or device, a priority change without a reason, or an
               Idempotency-Key longer than 200 characters
        """
        backend = self.request.app[BACKEND]
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            return error(400, "Idempotency-Key: 1 to 200 characters")
        try:
            new = grade_report(backend.config, logged_by=_user(self.request).name,
                               **body.model_dump())
            order = await backend.desk.open_report(new, key=idempotency_key)
        except ReportRefused as exc:
            return error(400, str(exc))
        except WorkOrderLogError as exc:
            return error(503, f"the report could not be recorded: {exc}")
        return web.json_response(order_json(order))

    async def get(self, scope: Literal["open", "recent"] = "recent", hours: float = 168.0,
                  limit: int = 200) -> r200[WorkOrderList] | r400[ErrorBody] | r503[ErrorBody]:
        """Reported repairs, latest version of each order, newest first: ``scope=open`` the
        ones the gateway still works on, ``scope=recent`` every one updated in the last
        ``hours``.

        Tags: reports
        """
        if not 0 < hours <= 24 * 366 or not 1 <= limit <= _MAX_PAGE:
            return error(400, f"hours must be in (0, 8784] and limit in [1, {_MAX_PAGE}]")
        backend = self.request.app[BACKEND]
        if scope == "open":
            orders = sorted((o for o in backend.desk.open_orders if o.source == "report"),
                            key=lambda o: o.raised_at, reverse=True)[:limit]
        else:
            try:
                orders = await backend.worklog.recent(
                    limit, since=backend.clock.time() - hours * 3600.0, source="report")
            except WorkOrderLogError as exc:
                return error(503, f"the work-order history cannot be read: {exc}")
        return _json(WorkOrderList(orders=[order_json(o) for o in orders]))


class ReportResource(PydanticView):
    async def get(self, order_id: str, /) -> (r200[dict[str, Any]] | r404[ErrorBody]
                                             | r503[ErrorBody]):
        """One reported repair's work order, latest version, with every version in
        ``versions``.

        Tags: reports
        """
        return await _order_with_versions(self.request, order_id, source="report",
                                          masked=False)


class DevicesResource(PydanticView):
    async def get(self) -> r200[DeviceList]:
        """Every configured device: its link, its state and its points.

        Tags: devices
        """
        return _json(DeviceList(devices=self.request.app[CONSOLE].device_views()))


# --------------------------------------------------------------------------- history, KPIs


_MAX_PAGE = 1000


class HistoryResource(PydanticView):
    async def get(self, hours: float = 24.0, category: str | None = None,
                  priority: str | None = None, alarm_id: str | None = None,
                  text: str | None = None, before_seq: int | None = None,
                  limit: int = 200) -> r200[HistoryPage] | r400[ErrorBody]:
        """The alarm journal, newest first: every transition and operator action.

        Filters combine: the last ``hours``, a category, a priority, one alarm, and ``text``
        found in the device, location, message, actor or reason.

        Tags: history
        """
        if not 0 < hours <= 24 * 366 or not 1 <= limit <= _MAX_PAGE:
            return error(400, f"hours must be in (0, 8784] and limit in [1, {_MAX_PAGE}]")
        events = await _history(self.request, hours=hours, category=category,
                                priority=priority, alarm_id=alarm_id, text=text,
                                before_seq=before_seq, limit=limit + 1)
        return _json(HistoryPage(events=[HistoryEvent.build(e) for e in events[:limit]],
                                 more=len(events) > limit))


class HistoryCsvResource(PydanticView):
    async def get(self, hours: float = 24.0, category: str | None = None,
                  priority: str | None = None, alarm_id: str | None = None,
                  text: str | None = None) -> r200[str] | r400[ErrorBody]:
        """The same as /api/v1/history, as CSV (UTF-8 with BOM, for spreadsheet programs),
        at most 100,000 rows.

        Tags: history
        """
        if not 0 < hours <= 24 * 366:
            return error(400, "hours must be in (0, 8784]")
        events = await _history(self.request, hours=hours, category=category,
                                priority=priority, alarm_id=alarm_id, text=text,
                                before_seq=None, limit=100_000)
        tz = self.request.app[BACKEND].config.site.timezone
        body = await asyncio.to_thread(_csv, events, tz)
        return web.Response(body=body, content_type="text/csv", charset="utf-8", headers={
            "Content-Disposition": 'attachment; filename="propgw-history.csv"'})


class KpiResource(PydanticView):
    async def get(self, hours: float = 24.0) -> r200[dict[str, Any]] | r400[ErrorBody]:
        """Alarm KPIs over the last ``hours``: rates, priority mix, the ten most frequent,
        floods, chattering and standing alarms, operator actions, and activations per hour.

        Tags: history
        """
        if not 0 < hours <= 24 * 366:
            return error(400, "hours must be in (0, 8784]")
        backend = self.request.app[BACKEND]
        now = backend.clock.time()
        since = now - hours * 3600.0
        report = await backend.book.journal.run(
            lambda conn: alarm_report(conn, since=since, now=now,
                                      timezone=backend.config.site.timezone))
        return web.json_response(report.to_json())


# --------------------------------------------------------------------------- incident reviews


class IncidentReviewResource(PydanticView):
    async def get(self, order_id: str, /) -> (r200[IncidentReview] | r404[ErrorBody]
                                             | r503[ErrorBody]):
        """The review (事后复盘) of one incident, named by its work order's id: the timeline
        from first detection through every alarm transition, operator action, escalation step
        and platform answer, in the site's time zone, with each response window's verdict and
        the readings that raised the alarm.

        Tags: incident reviews
        """
        review = await _review(self.request, order_id)
        return review if isinstance(review, web.Response) else _json(review)


class IncidentReviewHtml(PydanticView):
    async def get(self, order_id: str, /, lang: Literal["zh-CN", "en"] = "zh-CN") -> (
            r200[str] | r404[ErrorBody] | r503[ErrorBody]):
        """The same review as a self-contained page that prints on A4 (print it to PDF from
        the browser for a file).

        Tags: incident reviews
        """
        review = await _review(self.request, order_id)
        if isinstance(review, web.Response):
            return review
        return _html(review_html(review, lang))


class IncidentSummaryResource(PydanticView):
    async def get(self, month: str | None = None) -> (r200[MonthlySummary] | r400[ErrorBody]
                                                     | r503[ErrorBody]):
        """One calendar month (``YYYY-MM``, site time zone; default: this month) of work
        orders: by priority, category and building, each response window's compliance, mean
        and 90th-percentile times to acknowledge, reach the site and resolve, and the P0/P1
        incidents.

        Tags: incident reviews
        """
        summary = await _summary(self.request, month)
        return summary if isinstance(summary, web.Response) else _json(summary)


class IncidentSummaryHtml(PydanticView):
    async def get(self, month: str | None = None, lang: Literal["zh-CN", "en"] = "zh-CN") -> (
            r200[str] | r400[ErrorBody] | r503[ErrorBody]):
        """The monthly summary as a page that prints on A4.

        Tags: incident reviews
        """
        summary = await _summary(self.request, month)
        if isinstance(summary, web.Response):
            return summary
        return _html(summary_html(summary, lang))


async def _review(request: web.Request, order_id: str) -> IncidentReview | web.Response:
    backend = request.app[BACKEND]
    try:
        review = await gather_review(order_id, worklog=backend.worklog,
                                     journal=backend.book.journal, config=backend.config,
                                     now=backend.clock.time(), live=backend.desk.get(order_id))
    except WorkOrderLogError as exc:
        return error(503, f"the work-order history cannot be read: {exc}")
    except JournalError as exc:
        return error(503, f"the alarm journal cannot be read: {exc}")
    if review is None:
        return error(404, f"no work order {order_id}")
    return review


async def _summary(request: web.Request, month: str | None) -> MonthlySummary | web.Response:
    backend = request.app[BACKEND]
    now = backend.clock.time()
    if month is None:
        zone = ZoneInfo(backend.config.site.timezone)
        month = dt.datetime.fromtimestamp(now, tz=zone).strftime("%Y-%m")
    try:
        return await gather_summary(month, worklog=backend.worklog, config=backend.config,
                                    now=now)
    except ValueError as exc:
        return error(400, str(exc))
    except WorkOrderLogError as exc:
        return error(503, f"the work-order history cannot be read: {exc}")


def _html(page: str) -> web.Response:
    # The page carries its own style sheet and nothing else: no script, no fetch.
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


# --------------------------------------------------------------------------- helpers


async def _order_with_versions(request: web.Request, order_id: str, *, source: str | None,
                               masked: bool) -> web.Response:
    """An order's latest version and its history; ``masked``: a reporter's contact masked
    unless the site shares it (for routes viewers may call)."""
    backend = request.app[BACKEND]
    try:
        history = await backend.worklog.get(order_id)
    except WorkOrderLogError as exc:
        return error(503, f"the work-order history cannot be read: {exc}")
    live = backend.desk.get(order_id)
    if history is None and live is None:
        return error(404, f"no work order {order_id}")
    versions = history.versions if history is not None else []
    latest = live if live is not None and (history is None or live.seq >= history.latest.seq) \
        else history.latest if history is not None else live
    assert latest is not None
    if source is not None and latest.source != source:
        return error(404, f"work order {order_id} is not a reported repair")
    share = not masked or backend.config.reports.share_contact
    body = order_json(shareable(latest, share))
    body["versions"] = [shareable(v, share).model_dump(mode="json") for v in versions]
    return web.json_response(body)


async def _history(request: web.Request, *, hours: float, category: str | None,
                   priority: str | None, alarm_id: str | None, text: str | None,
                   before_seq: int | None, limit: int) -> list[AlarmEvent]:
    backend = request.app[BACKEND]
    return await backend.book.journal.search(
        since=backend.clock.time() - hours * 3600.0, category=category, priority=priority,
        alarm_id=alarm_id, text=text, before_seq=before_seq, limit=limit)


def _csv(events: list[AlarmEvent], tz: str) -> bytes:
    zone = ZoneInfo(tz)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["seq", "time", "alarm_id", "device", "building", "floor", "zone", "room",
                     "category", "priority", "transition", "state", "actor", "reason",
                     "message_zh", "message_en"])
    for e in events:
        when = dt.datetime.fromtimestamp(e.ts, tz=zone).isoformat(timespec="seconds")
        loc = e.location
        writer.writerow([e.seq, when, e.alarm_id, e.device_name, loc.building or "",
                         loc.floor or "", loc.zone or "", loc.room or "", e.category,
                         e.priority, e.transition.value if e.transition else "",
                         e.lifecycle.value if e.lifecycle else "", e.actor, e.reason,
                         e.message_zh, e.message_en])
    return "\ufeff".encode() + out.getvalue().encode()


def _json(model: Any) -> web.Response:
    return web.json_response(text=model.model_dump_json())


#: (method, path) -> the view class; the server adds them in this order.
VIEWS: list[tuple[str, type[PydanticView]]] = [
    ("/api/v1/site", SiteResource),
    ("/api/v1/alarms", AlarmsResource),
    ("/api/v1/alarms/{alarm_id}", AlarmResource),
    ("/api/v1/alarms/{alarm_id}/acknowledge", AcknowledgeAction),
    ("/api/v1/alarms/{alarm_id}/shelve", ShelveAction),
    ("/api/v1/alarms/{alarm_id}/unshelve", UnshelveAction),
    ("/api/v1/alarms/{alarm_id}/reset", ResetAction),
    ("/api/v1/alarms/{alarm_id}/remove-from-service", RemoveFromServiceAction),
    ("/api/v1/alarms/{alarm_id}/return-to-service", ReturnToServiceAction),
    ("/api/v1/alarms/{alarm_id}/comment", CommentAction),
    ("/api/v1/work-orders", WorkOrdersResource),
    ("/api/v1/work-orders/{order_id}", WorkOrderResource),
    ("/api/v1/work-orders/{order_id}/assign", AssignAction),
    ("/api/v1/work-orders/{order_id}/acknowledge", OrderAcknowledgeAction),
    ("/api/v1/work-orders/{order_id}/on-site", OrderOnSiteAction),
    ("/api/v1/work-orders/{order_id}/resolve", OrderResolveAction),
    ("/api/v1/work-orders/{order_id}/follow-up", FollowUpAction),
    ("/api/v1/follow-ups", FollowUpsResource),
    ("/api/v1/report-categories", ReportCategoriesResource),
    ("/api/v1/reports", ReportsResource),
    ("/api/v1/reports/{order_id}", ReportResource),
    ("/api/v1/devices", DevicesResource),
    ("/api/v1/history", HistoryResource),
    ("/api/v1/history.csv", HistoryCsvResource),
    ("/api/v1/kpi", KpiResource),
    ("/api/v1/incidents/summary", IncidentSummaryResource),
    ("/api/v1/incidents/summary.html", IncidentSummaryHtml),
    ("/api/v1/incidents/{order_id}/review", IncidentReviewResource),
    ("/api/v1/incidents/{order_id}/review.html", IncidentReviewHtml),
]

#: Who may call each (method, path); anything not listed here is refused.
ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/api/v1/site"): "public",
    ("GET", "/api/v1/alarms"): "viewer",
    ("GET", "/api/v1/alarms/{alarm_id}"): "viewer",
    ("POST", "/api/v1/alarms/{alarm_id}/acknowledge"): "operator",
    ("POST", "/api/v1/alarms/{alarm_id}/shelve"): "operator",
    ("POST", "/api/v1/alarms/{alarm_id}/unshelve"): "operator",
    ("POST", "/api/v1/alarms/{alarm_id}/reset"): "operator",
    ("POST", "/api/v1/alarms/{alarm_id}/remove-from-service"): "engineer",
    ("POST", "/api/v1/alarms/{alarm_id}/return-to-service"): "engineer",
    ("POST", "/api/v1/alarms/{alarm_id}/comment"): "operator",
    ("GET", "/api/v1/work-orders"): "viewer",
    ("GET", "/api/v1/work-orders/{order_id}"): "viewer",
    ("POST", "/api/v1/work-orders/{order_id}/assign"): "operator",
    ("POST", "/api/v1/work-orders/{order_id}/acknowledge"): "operator",
    ("POST", "/api/v1/work-orders/{order_id}/on-site"): "operator",
    ("POST", "/api/v1/work-orders/{order_id}/resolve"): "operator",
    ("POST", "/api/v1/work-orders/{order_id}/follow-up"): "operator",
    ("GET", "/api/v1/follow-ups"): "viewer",
    ("GET", "/api/v1/report-categories"): "viewer",
    ("POST", "/api/v1/reports"): "operator",
    ("GET", "/api/v1/reports"): "operator",
    ("GET", "/api/v1/reports/{order_id}"): "operator",
    ("GET", "/api/v1/devices"): "viewer",
    ("GET", "/api/v1/history"): "viewer",
    ("GET", "/api/v1/history.csv"): "viewer",
    ("GET", "/api/v1/kpi"): "viewer",
    ("GET", "/api/v1/incidents/summary"): "viewer",
    ("GET", "/api/v1/incidents/summary.html"): "viewer",
    ("GET", "/api/v1/incidents/{order_id}/review"): "viewer",
    ("GET", "/api/v1/incidents/{order_id}/review.html"): "viewer",
}
