"""One health model: "ok" means the pipe moves, not merely that the event loop spins.

Every stage reports progress (state, backlog, oldest waiting item, last useful work) and this
module turns it into one :class:`HealthReport` with a status and the reasons for it:

* ``ok``: nothing to say.
* ``degraded``: something a person should know, that the gateway cannot fix by restarting:
  the upstream link is down, messages wait longer than ``health.pending_warn_after``, the disk
  refuses writes, devices are in comm-loss, a stage is restarting.
* ``failing``: the gateway itself has stopped moving: a stage has work waiting and made no
  progress for ``health.stall_after`` although nothing outside stops it (a work order pending
  while its upstream link says connected), or a critical stage keeps crashing. A fresh process
  is the cure: the liveness check stops feeding the systemd watchdog and exits.

The status API, the console and the watchdog all read this one report, so they never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from drivers.base import Driver
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import HealthConfig
from gateway.outbox import DeliveryProgress, Outbox
from gateway.supervisor import Supervisor
from gateway.workorders import WorkOrderLogHealth

if TYPE_CHECKING:
    from gateway.influx import InfluxStatus

__all__ = ["HealthModel", "HealthReport", "JournalStatus", "Reason", "Status"]

log = logging.getLogger(__name__)

Status = Literal["ok", "degraded", "failing"]

#: Device states that mean "this device is not being read" (``bad``: it answers, but with
#: errors or garbage).
_DEVICE_DOWN = frozenset({"comm-loss", "link-down", "backoff", "bad"})
#: Devices named in a reason; more are counted.
_NAMED_DEVICES = 5
#: An MQTT link that shed telemetry keeps the health degraded this long after the last shed.
SHED_RECENT = 300.0


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the health is not ok.

    Attributes:
        code: Stable, machine-readable: ``stage_restarting``, ``stage_crash_loop``,
            ``upstream_down``, ``messages_waiting``, ``stalled``, ``storage_error``,
            ``not_durable``, ``state_replaced``, ``parked``, ``outbox_over_bound``,
            ``journal_error``, ``worklog_error``, ``comm_loss``, ``alarm_backlog_stalled``,
            ``influxdb_down``, ``influxdb_buffering``, ``telemetry_shed``, ``broker_dropped``.
        message: For people (English), e.g. ``3 message(s) waiting for mqtt, oldest 45 s``.
        fatal: The gateway is failing, not merely degraded.
    """

    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What the alarm journal reports about itself."""

    path: str | None
    durable: bool
    error: str | None
    #: Where an unreadable journal found at start-up was moved.
    replaced: str | None = None


@dataclass(frozen=True)
class HealthReport:
    """The gateway's health at one moment."""

    status: Status
    reasons: tuple[Reason, ...]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failing(self) -> bool:
        return self.status == "failing"

    def summary(self) -> str:
        """One line for logs: ``degraded: upstream mqtt not connected (...); ...``."""
        if not self.reasons:
            return self.status
        return f"{self.status}: " + "; ".join(r.message for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok,
                "reasons": [asdict(r) for r in self.reasons], **self.detail}


class HealthModel:
    """Builds :class:`HealthReport` s from the stages' own progress reports.

    Args:
        cfg: ``health`` from the site config.
        clock: Ages and stalls are measured on its monotonic clock.
        supervisor: Knows every stage's state and restarts.
        outbox: Work orders waiting per target (None: no upstream).
        targets: Upstream target name -> its publisher's progress.
        drivers: Device links (comm-loss is reported, never fatal).
        alarm_feed: The alarm engine's reading queue (a full queue that does not drain is a
            stall).
        journal: Reports the alarm journal's state.
    """

    def __init__(self, cfg: HealthConfig, clock: Clock, supervisor: Supervisor, *,
                 outbox: Outbox | None = None,
                 targets: Mapping[str, DeliveryProgress] | None = None,
                 drivers: Sequence[Driver] = (),
                 alarm_feed: Subscription | None = None,
                 journal: Callable[[], JournalStatus] | None = None,
                 worklog: Callable[[], WorkOrderLogHealth] | None = None,
                 influx: Callable[[], InfluxStatus] | None = None) -> None:
        self._cfg = cfg
        self._clock = clock
        self._supervisor = supervisor
        self._outbox = outbox
        self._targets = dict(targets or {})
        self._drivers = list(drivers)
        self._alarm_feed = alarm_feed
        self._journal = journal
        self._worklog = worklog
        self._influx = influx
        self._feed_seen: tuple[int, float] | None = None
        #: Per link: messages shed so far, and when that number last grew.
        self._shed_seen: dict[str, tuple[int, float]] = {}

    def set_drivers(self, drivers: Sequence[Driver]) -> None:
        """The device links after a config reload."""
        self._drivers = list(drivers)

    def report(self) -> HealthReport:
        """The health now."""
        now = self._clock.monotonic()
        reasons: list[Reason] = []
        detail: dict[str, Any] = {
            "stages": self._stages(now, reasons),
            "targets": self._targets_detail(now, reasons),
        }
        if self._outbox is not None:
            detail["outbox"] = self._outbox_detail(reasons)
        if self._journal is not None:
            detail["journal"] = self._journal_detail(reasons)
        if self._worklog is not None:
            detail["worklog"] = self._worklog_detail(reasons)
        detail["devices"] = self._devices(now, reasons)
        if self._influx is not None:
            detail["influxdb"] = self._influx_detail(reasons)
        if self._alarm_feed is not None:
            detail["alarm_feed"] = self._feed(now, reasons)
        status: Status = ("failing" if any(r.fatal for r in reasons)
                          else "degraded" if reasons else "ok")
        return HealthReport(status, tuple(reasons), detail)

    # -- parts

    def _stages(self, now: float, reasons: list[Reason]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for st in self._supervisor.stages():
            recent = st.restarts_within(self._cfg.restart_window, now)
            out[st.name] = {"state": st.state, "for_s": round(now - st.since, 1),
                            "restarts": st.restarts, "last_problem": st.last_problem,
                            "critical": st.critical}
            if st.critical and recent >= self._cfg.max_restarts:
                reasons.append(Reason(
                    "stage_crash_loop", f"stage {st.name} restarted {recent} times within "
                    f"{self._cfg.restart_window:g} s (last: {st.last_problem})", fatal=True))
            elif st.state == "restarting":
                reasons.append(Reason("stage_restarting",
                                      f"stage {st.name} is restarting: {st.last_problem}"))
        return out

    def _targets_detail(self, now: float, reasons: list[Reason]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, progress in self._targets.items():
            pending = self._outbox.pending(name) if self._outbox is not None else 0
            oldest = self._outbox.oldest_pending(name) if self._outbox is not None else None
            age = now - oldest.queued if oldest is not None else None
            idle = progress.idle_for(now)
            out[name] = {"pending": pending,
                         "oldest_pending_s": None if age is None else round(age, 1),
                         "connected": progress.connected, "sent": progress.sent,
                         "idle_s": None if idle == float("inf") else round(idle, 1),
                         "last_error": progress.last_error}
            if progress.connected is False:
                why = f": {progress.last_error}" if progress.last_error else ""
                reasons.append(Reason("upstream_down", f"upstream {name} not connected{why}"))
            elif progress.last_error is not None:
                reasons.append(Reason("upstream_down",
                                      f"upstream {name} failing: {progress.last_error}"))
            if age is None or age <= self._cfg.pending_warn_after:
                continue
            stall = self._cfg.stall_after
            if age > stall and progress.connected is not False and idle > stall:
                reasons.append(Reason(
                    "stalled", f"{pending} message(s) for {name} waiting up to {age:.0f} s "
                    f"and nothing attempted for {min(idle, age):.0f} s although the link is "
                    f"not down", fatal=True))
            else:
                reasons.append(Reason("messages_waiting", f"{pending} message(s) waiting for "
                                                          f"{name}, oldest {age:.0f} s"))
        return out

    def _outbox_detail(self, reasons: list[Reason]) -> dict[str, Any]:
        assert self._outbox is not None
        h = self._outbox.health()
        if not h.durable:
            reasons.append(Reason("not_durable", "outbox in memory only: undelivered work "
                                                 "orders are lost if the gateway stops"))
        if h.storage_error is not None:
            reasons.append(Reason("storage_error",
                                  f"outbox cannot write {h.path}: {h.storage_error}"))
        for target, n in h.parked.items():
            if n:
                reasons.append(Reason("parked", f"{n} message(s) refused for good by "
                                                f"{target} (parked)"))
        if h.replaced is not None:
            reasons.append(Reason("state_replaced", f"the outbox file was unreadable at start "
                                                    f"and was moved to {h.replaced}: a person "
                                                    f"should look at it"))
        if h.over_bound:
            reasons.append(Reason("outbox_over_bound", "outbox over its bound: only work "
                                                       "orders and P0 alarms are kept"))
        return {**asdict(h), "ok": h.ok}

    def _journal_detail(self, reasons: list[Reason]) -> dict[str, Any]:
        assert self._journal is not None
        j = self._journal()
        if j.error is not None:  # it names the file
            reasons.append(Reason("journal_error", j.error))
        elif not j.durable:
            reasons.append(Reason("not_durable", "alarm journal in memory only: open alarms, "
                                                 "shelving and latches do not survive a "
                                                 "restart"))
        if j.replaced is not None:
            reasons.append(Reason("state_replaced", f"the alarm journal was unreadable at "
                                                    f"start and was moved to {j.replaced}"))
        return asdict(j)

    def _worklog_detail(self, reasons: list[Reason]) -> dict[str, Any]:
        assert self._worklog is not None
        w = self._worklog()
        if w.storage_error is not None:
            reasons.append(Reason("worklog_error", f"work-order history cannot write {w.path}: "
                                                   f"{w.storage_error}"))
        if w.replaced is not None:
            reasons.append(Reason("state_replaced", f"the work-order history was unreadable at "
                                                    f"start and was moved to {w.replaced}"))
        return {**asdict(w), "ok": w.ok}

    def _influx_detail(self, reasons: list[Reason]) -> dict[str, Any]:
        """History only: never fatal, since no alarm or work order depends on it."""
        assert self._influx is not None
        s = self._influx()
        if s.state in ("down", "refused"):
            reasons.append(Reason("influxdb_down", f"InfluxDB not taking writes: {s.last_error}; "
                                                   f"{s.buffered} point(s) buffered, "
                                                   f"{s.dropped} dropped"))
        elif s.buffered:
            reasons.append(Reason("influxdb_buffering", f"{s.buffered} point(s) wait for "
                                                        f"InfluxDB"))
        return asdict(s)

    def _devices(self, now: float, reasons: list[Reason]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        down: list[str] = []
        for driver in self._drivers:
            h = driver.health()
            out[h.link] = {"state": h.state, "last_error": h.last_error,
                           "devices": dict(h.devices)}
            down += [dev for dev, state in h.devices.items() if state in _DEVICE_DOWN]
            if "shed" in h.counters:
                out[h.link]["shed"] = self._shed(h.link, h.counters["shed"], now, reasons)
            if h.counters.get("broker_dropped"):
                out[h.link]["broker_dropped"] = self._broker_dropped(
                    h.link, h.counters["broker_dropped"], now, reasons)
        if down:
            named = ", ".join(sorted(down)[:_NAMED_DEVICES])
            more = f" and {len(down) - _NAMED_DEVICES} more" if len(down) > _NAMED_DEVICES else ""
            reasons.append(Reason("comm_loss", f"{len(down)} device(s) not answering (or "
                                               f"answering errors): {named}{more}"))
        return out

    def _shed(self, link: str, shed: int, now: float, reasons: list[Reason]) -> int:
        """An MQTT link's shed telemetry: degraded while it grew within SHED_RECENT."""
        if shed and self._grew_lately(link, shed, now):
            reasons.append(Reason("telemetry_shed", f"{link} shed {shed} telemetry message(s) "
                                                    f"it could not keep up with (life-safety "
                                                    f"messages are never shed); the last "
                                                    f"within {SHED_RECENT / 60:.0f} min"))
        return shed

    def _broker_dropped(self, link: str, dropped: int, now: float,
                        reasons: list[Reason]) -> int:
        """Messages the device broker dropped before the gateway took them: degraded while the
        count grew within SHED_RECENT."""
        if self._grew_lately(f"{link}/broker", dropped, now):
            reasons.append(Reason("broker_dropped", f"the broker of {link} dropped {dropped} "
                                                    f"message(s) before the gateway took them "
                                                    f"(its queue for the gateway was full); "
                                                    f"the last within {SHED_RECENT / 60:.0f} "
                                                    f"min"))
        return dropped

    def _grew_lately(self, key: str, count: int, now: float) -> bool:
        """Whether ``count`` changed within SHED_RECENT (the first sight counts as a change)."""
        seen = self._shed_seen.get(key)
        if seen is None or seen[0] != count:
            seen = (count, now)
            self._shed_seen[key] = seen
        return now - seen[1] < SHED_RECENT

    def _feed(self, now: float, reasons: list[Reason]) -> dict[str, Any]:
        assert self._alarm_feed is not None
        feed = self._alarm_feed
        backlog = feed.queue.qsize()
        if self._feed_seen is None or self._feed_seen[0] != feed.delivered or backlog == 0:
            self._feed_seen = (feed.delivered, now)
        idle = now - self._feed_seen[1]
        if backlog and idle > self._cfg.stall_after:
            reasons.append(Reason("alarm_backlog_stalled",
                                  f"{backlog} reading(s) wait for the alarm engine, which has "
                                  f"taken none for {idle:.0f} s", fatal=True))
        return {"backlog": backlog, "taken": feed.delivered}
