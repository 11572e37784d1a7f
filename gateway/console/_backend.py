"""What the console may read and do: narrow views of the stages, built by the composition root.

The console is a side tap. It reads the stages through the queries listed here and acts only
through :class:`~gateway.alarms.AlarmActions` (journaled, with the user's name) and the
platform's status answers; no stage imports the console.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from drivers.base import LinkHealth
from gateway.alarms import AlarmActions, AlarmBook
from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.health import HealthReport
from gateway.readings import LastReadings
from gateway.workorders import StatusAnswer, WorkOrder, WorkOrderDesk, WorkOrderLog

__all__ = ["Backend", "StatusHandler"]

#: Applies a platform status answer; returns the order after it, or None if unknown.
StatusHandler = Callable[[str, StatusAnswer], Awaitable[WorkOrder | None]]


@dataclass
class Backend:
    """The gateway as the console sees it."""

    config: GatewayConfig
    clock: Clock
    book: AlarmBook
    actions: AlarmActions
    desk: WorkOrderDesk
    worklog: WorkOrderLog
    readings: LastReadings
    links: Callable[[], Sequence[LinkHealth]]
    health: Callable[[], HealthReport]
    on_answer: StatusHandler
    #: Extra health data the platform's health endpoint adds (legacy keys).
    platform_health: Callable[[], dict[str, object]] = field(default=lambda: {})
