"""Keeps every long-running stage running, and says so when it cannot.

A stage (a driver, the alarm engine, the work-order desk, an upstream publisher) runs until the
gateway stops. Whatever else ends it is a fault, and each kind is handled the same way: logged
with its cause, counted, and the stage restarted after a capped, jittered back-off, so one broken
stage never takes the others (nor the alarm path) down with it:

* it raised: a bug (drivers handle their own device and connection errors), logged with its
  traceback;
* it returned: it should never;
* it ended *cancelled although nobody stopped it*. That is how a Python 3.11 ``TaskGroup`` with
  a failed child leaves a task (see :mod:`gateway.aio`), and a supervisor that took every
  ``CancelledError`` for a shutdown once let the upstream publisher die silently after its
  first reconnect. Only :meth:`Supervisor.stop` (every stage) and :meth:`Supervisor.retire`
  (one stage, replaced by a config reload) make a cancellation a stop.

Each stage's state, restart count and last problem are kept in :class:`StageStatus` for the
health model; a critical stage restarted too often is reported there as failing, and the
gateway's liveness check then stops feeding the systemd watchdog.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.backoff import Backoff
from gateway.clock import Clock

__all__ = ["StageStatus", "Supervisor"]

log = logging.getLogger(__name__)

#: A stage that ran this long before failing is considered to have been healthy.
_HEALTHY_RUN = 60.0
#: Restart times kept per stage (enough for any sane ``max_restarts``).
_HISTORY = 64

StageState = Literal["running", "restarting", "stopped"]


@dataclass
class StageStatus:
    """What the health model knows about one supervised stage."""

    name: str
    critical: bool
    state: StageState = "stopped"
    #: Monotonic time of the last state change.
    since: float = 0.0
    restarts: int = 0
    last_problem: str | None = None
    #: Monotonic times of recent restarts, oldest first.
    restart_times: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_HISTORY))

    def restarts_within(self, window: float, now: float) -> int:
        return sum(1 for t in self.restart_times if now - t <= window)


class Supervisor:
    """Runs stages until :meth:`stop`, restarting each whenever it ends.

    Args:
        clock: For back-off sleeps and the times in :class:`StageStatus`.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stopping = asyncio.Event()
        self._stages: dict[str, StageStatus] = {}
        self._retiring: set[str] = set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Mark the coming cancellations of the stages as a stop (call before cancelling)."""
        self._stopping.set()

    def retire(self, name: str) -> None:
        """Mark the coming cancellation of stage ``name`` as its end (call before cancelling
        it): it is then forgotten, and a new stage may take its name."""
        self._retiring.add(name)

    def stages(self) -> list[StageStatus]:
        """Every stage started so far, in start order."""
        return list(self._stages.values())

    async def run(self, name: str, stage: Callable[[], Awaitable[None]], *,
                  critical: bool = False, backoff: Backoff | None = None) -> None:
        """Run ``stage()`` until this task is cancelled after :meth:`stop`.

        Args:
            name: For logs and the health model; unique among the stages.
            stage: Starts the stage afresh each time it is called.
            critical: The alarm path depends on it (the health model is stricter).
            backoff: Restart delays; default 1 s doubling to 60 s.
        """
        status = self._stages[name] = StageStatus(name, critical)
        backoff = backoff or Backoff(base=1.0, cap=60.0)
        task = asyncio.current_task()
        assert task is not None
        while True:
            started = self._set(status, "running")
            try:
                await stage()
                problem = "returned although it should run until the gateway stops"
                log.error("stage %s %s", name, problem)
            except asyncio.CancelledError:
                if self._stopping.is_set() or name in self._retiring:
                    self._end(name, status)
                    raise
                # Nobody asked: a stale cancellation request (see module docstring). Take it
                # back, or the stage's next timeout would misfire the same way.
                while task.cancelling():
                    task.uncancel()
                problem = "ended cancelled although nobody stopped it"
                log.exception("stage %s %s", name, problem)
            except Exception as exc:
                problem = f"crashed: {type(exc).__name__}: {exc}"
                log.exception("stage %s crashed", name)
            if self._clock.monotonic() - started > _HEALTHY_RUN:
                backoff.reset()
            delay = backoff.next_delay()
            status.restarts += 1
            status.last_problem = problem
            status.restart_times.append(self._clock.monotonic())
            self._set(status, "restarting")
            log.warning("stage %s restarting in %.1fs (restart %d)", name, delay,
                        status.restarts)
            try:
                await self._clock.sleep(delay)
            except asyncio.CancelledError:
                # Nothing but a real cancel() reaches a sleep: a stop, even if unannounced.
                self._end(name, status)
                raise

    def _end(self, name: str, status: StageStatus) -> None:
        self._set(status, "stopped")
        if name in self._retiring:
            self._retiring.discard(name)
            if self._stages.get(name) is status:
                del self._stages[name]

    def _set(self, status: StageStatus, state: StageState) -> float:
        now = self._clock.monotonic()
        status.state, status.since = state, now
        return now
