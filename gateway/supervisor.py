"""Restarts a failed long-running stage with capped, jittered backoff.

Drivers handle their own device and connection errors; what reaches this level is a bug. It is
logged with its traceback and the stage is restarted, so one broken driver never takes down the
others (nor the alarm path).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.backoff import Backoff
from gateway.clock import Clock

__all__ = ["supervise"]

log = logging.getLogger(__name__)

#: A stage that ran this long before failing is considered to have been healthy.
_HEALTHY_RUN = 60.0


async def supervise(name: str, stage: Callable[[], Awaitable[None]], clock: Clock, *,
                    backoff: Backoff | None = None) -> None:
    """Run ``stage()`` until cancelled, restarting it whenever it returns or raises."""
    backoff = backoff or Backoff(base=1.0, cap=60.0)
    while True:
        started = clock.monotonic()
        try:
            await stage()
            problem = "stopped unexpectedly"
        except Exception:
            log.exception("%s crashed", name)
            problem = "crashed"
        if clock.monotonic() - started > _HEALTHY_RUN:
            backoff.reset()
        delay = backoff.next_delay()
        log.warning("%s %s; restarting in %.1fs", name, problem, delay)
        await clock.sleep(delay)
