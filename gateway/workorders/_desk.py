"""Turns alarm events into work orders: one per incident, updated, never duplicated.

The response window per priority follows DOMAIN.md §0/§6: life-safety (P0) staff on site
within 5 minutes; P1 within 30 minutes (maintenance arrival for entrapment); P2 within 4 hours;
P3 routine, 48 hours.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable

from gateway.alarms import AlarmEvent, AlarmState
from gateway.clock import Clock
from gateway.config import SiteConfig
from gateway.workorders._model import Bilingual, WorkOrder, WorkOrderLocation

__all__ = ["RESPONSE_WINDOWS", "WorkOrderDesk", "WorkOrderSink"]

log = logging.getLogger(__name__)

WorkOrderSink = Callable[[WorkOrder], Awaitable[None]]

#: Seconds from raising a work order to the on-site deadline, by priority.
RESPONSE_WINDOWS: dict[str, float] = {"P0": 300.0, "P1": 1800.0, "P2": 4 * 3600.0,
                                      "P3": 48 * 3600.0}

_CATEGORY_TITLES: dict[str, tuple[str, str]] = {
    "elevator_entrapment": ("电梯困人", "Elevator entrapment"),
    "fire_alarm": ("火警", "Fire alarm"),
    "door_forced": ("门被强行打开", "Door forced open"),
    "power_loss": ("停电", "Power loss"),
    "water_leak": ("漏水", "Water leak"),
}


class WorkOrderDesk:
    """Keeps the open work orders and emits new ones and their updates."""

    def __init__(self, site: SiteConfig, clock: Clock, sink: WorkOrderSink) -> None:
        self._site = site
        self._clock = clock
        self._sink = sink
        self._open: dict[str, WorkOrder] = {}

    @property
    def open_orders(self) -> list[WorkOrder]:
        return list(self._open.values())

    async def handle(self, event: AlarmEvent) -> WorkOrder | None:
        """Apply one alarm event; returns the work order sent, if any."""
        if not event.work_order:
            return None
        current = self._open.get(event.alarm_id)
        if event.state is AlarmState.ACTIVE:
            if current is not None and current.status == "open":
                return None  # same incident still open: no second order
            order = self._new_order(event)
        elif current is None:
            return None
        else:
            order = current.model_copy(update={
                "seq": current.seq + 1, "status": "alarm_cleared",
                "evidence": event.evidence, "updated_at": _iso(event.ts)})
        self._open[event.alarm_id] = order
        log.warning("work order %s %s (%s, respond by %s): %s", order.id, order.status,
                    order.priority, order.respond_by, order.title.en)
        await self._sink(order)
        return order

    def _new_order(self, event: AlarmEvent) -> WorkOrder:
        zh_title, en_title = _CATEGORY_TITLES.get(
            event.category, (event.category, event.category.replace("_", " ").capitalize()))
        window = RESPONSE_WINDOWS[event.priority]
        # Stable across re-sends: derived from what identifies the incident, not from chance.
        order_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"propgw:{self._site.id}:"
                                                      f"{event.alarm_id}:{event.ts:.3f}"))
        return WorkOrder(
            id=order_id, seq=1, site_id=self._site.id, gateway_id=self._site.gateway_id,
            alarm_id=event.alarm_id, rule_id=event.rule_id, category=event.category,
            priority=event.priority,
            status="open",
            title=Bilingual(zh=f"{zh_title}：{event.device_name}",
                            en=f"{en_title}: {event.device_name}"),
            description=Bilingual(zh=event.message_zh, en=event.message_en),
            location=WorkOrderLocation(site=self._site.id, building=event.location.building,
                                       floor=event.location.floor, zone=event.location.zone,
                                       room=event.location.room, device=event.device,
                                       device_name=event.device_name),
            evidence=event.evidence,
            detected_at=_iso(event.condition_since), raised_at=_iso(event.ts),
            respond_by=_iso(event.ts + window), updated_at=_iso(event.ts),
        )


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")
