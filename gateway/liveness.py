"""Feeds the systemd watchdog only while the pipeline moves, and gives up loudly when it does not.

A watchdog fed by a timer proves only that the event loop runs: during the fault drill that
prompted this module, the loop kept feeding systemd while work orders had stopped for good. Here
each ping follows a fresh :class:`~gateway.health.HealthReport`; while the report is
``failing`` the pings stop (systemd then kills and restarts the gateway after ``WatchdogSec``)
and, unless ``health.exit_on_failing`` is off, the gateway is asked to exit with status 3 at
once, which works without systemd's watchdog too (``Restart=always``).

Health changes are logged on the transition only (WARNING when it worsens, INFO when it is ok
again, CRITICAL when failing) and shown in ``systemctl status`` through ``STATUS=``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.clock import Clock
from gateway.health import HealthModel, HealthReport
from gateway.sdnotify import notify, watchdog_interval

__all__ = ["DEFAULT_INTERVAL", "Liveness"]

log = logging.getLogger(__name__)

#: How often the health is checked when systemd sets no watchdog interval.
DEFAULT_INTERVAL = 5.0


class Liveness:
    """The task that turns health reports into watchdog pings, log lines and an exit.

    Args:
        model: The gateway's health model.
        clock: For the interval.
        on_failing: Called once per failing episode (the gateway stops with status 3).
        interval: Seconds between checks when systemd sets no watchdog (default
            :data:`DEFAULT_INTERVAL`); with one, half its ``WatchdogSec``.
    """

    def __init__(self, model: HealthModel, clock: Clock, *,
                 on_failing: Callable[[HealthReport], None] | None = None,
                 interval: float | None = None) -> None:
        self._model = model
        self._clock = clock
        self._on_failing = on_failing
        self._watchdog = watchdog_interval()
        self.interval = self._watchdog or interval or DEFAULT_INTERVAL
        self.pings = 0
        self.last: HealthReport | None = None

    async def run(self) -> None:
        """Check, ping (or not), sleep; until cancelled."""
        # The links are still coming up: feed the watchdog, but judge only after one interval.
        if not self._model.report().failing:
            self._ping()
        while True:
            await self._clock.sleep(self.interval)
            self.check()

    def check(self) -> HealthReport:
        """Read the health once and act on it."""
        report = self._model.report()
        previous, self.last = self.last, report
        if not report.failing:
            self._ping()
        changed = previous is None or _codes(previous) != _codes(report) \
            or previous.status != report.status
        if changed:
            self._log_change(previous, report)
            notify(f"STATUS={report.summary()[:200]}")
        if report.failing and (previous is None or not previous.failing) \
                and self._on_failing is not None:
            self._on_failing(report)
        return report

    def _ping(self) -> None:
        if self._watchdog is not None:
            notify("WATCHDOG=1")
        self.pings += 1

    @staticmethod
    def _log_change(previous: HealthReport | None, report: HealthReport) -> None:
        if report.failing:
            log.critical("health %s; the watchdog is no longer fed and the gateway will be "
                         "restarted", report.summary())
        elif report.reasons:
            log.warning("health %s", report.summary())
        elif previous is not None:
            log.info("health ok again")


def _codes(report: HealthReport) -> frozenset[tuple[str, bool]]:
    return frozenset((r.code, r.fatal) for r in report.reasons)
