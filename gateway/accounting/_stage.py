"""The accounting stage: meters' registers in, consumption per interval out, as readings.

It is a bus subscriber like any other and publishes what it computes back onto the bus, so
every consumer (alarm rules, the console, telemetry upstream, InfluxDB) carries consumption
like any reading without knowing about accounting:

* ``device = <meter id>``, ``point = <register point>_hour`` / ``_day`` (e.g.
  ``M07.import_kwh_hour``): the meter's consumption in that interval, in the register's unit.
* ``device = building.<location.building>``, same point names: the sum over the building's
  accounted meters with that register, published once every one of them has closed the
  interval (an interval that is incomplete for one of them is not published for the building).

Both timestamps of such a reading are the **start** of the interval it covers: an interval
published late (after a silence, or replayed after a crash) lands in its own place in a time
series, and a repeat overwrites itself there.

Back-pressure: the stage reads from a drop-oldest subscription. A dropped register reading
costs nothing but resolution (the next one carries the same total), and a stage that both
reads from and writes to the bus must never wait on itself.

State (the last register value and the open intervals of every meter, the building sums not
yet complete) is kept in ``state_dir/accounting-<site>-<gateway>.json``, written a moment
after intervals close, at least every ``save_every`` while readings arrive, and on the way out. A
restart carries on from it: the silence is apportioned like any other, so no hour is lost or
counted twice. A crash loses at most the state since the last write; the intervals closed in
that time are published again with the same timestamps (their values apportioned anew, the
meter's total still exact), and a time series keeps the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounting._counter import Closed, CounterAccount, Step
from gateway.accounting._virtual import BUILDING_PREFIX
from gateway.alarms import site_zone
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import AccountingConfig, GatewayConfig, durable_state_dir
from gateway.model import PointKey, Quality, Reading
from gateway.statefiles import write_json

__all__ = ["Accounting", "accounting_path"]

log = logging.getLogger(__name__)

_STATE_VERSION = 1
#: After an interval closes, the state is written on the first reading this much later.
_CLOSE_SAVE_DELAY = 2.0
#: Shutdown waits this long for the state file to be written.
_SAVE_TIMEOUT = 5.0

Publish = Callable[[Reading], Awaitable[None]]


def accounting_path(config: GatewayConfig, env: dict[str, str] | None = None) -> Path | None:
    """Where the accounting state lives; None: nowhere durable (kept in memory only)."""
    state_dir = durable_state_dir(config, env)
    if state_dir is None:
        return None
    return state_dir / f"accounting-{config.site.id}-{config.site.gateway_id}.json"


@dataclass(slots=True)
class _Pending:
    """One building interval being added up."""

    total: float = 0.0
    done: set[str] = field(default_factory=set)
    complete: bool = True


class Accounting:
    """Consumption per interval per meter and per building (see the module docstring).

    Args:
        config: The site config; its ``accounting`` section must be set.
        clock: For the save interval.
        publish: Where interval readings go (the bus).
        path: The state file; None: state is kept in memory only.
    """

    def __init__(self, config: GatewayConfig, clock: Clock, publish: Publish, *,
                 path: Path | None) -> None:
        if config.accounting is None:
            raise ValueError("Accounting needs an accounting: section")
        self.settings: AccountingConfig = config.accounting
        self.clock = clock
        self.publish = publish
        self.path = path
        self.tz = site_zone(config.site.timezone)
        self.accounts: dict[PointKey, CounterAccount] = {}
        #: Building of each accounted meter.
        self._building: dict[str, str] = {}
        #: Meters of each (building, register point).
        self._members: dict[tuple[str, str], set[str]] = {}
        self._pending: dict[tuple[str, str, str, float], _Pending] = {}
        self._next_save = 0.0
        self._dirty = False
        #: Interval readings published; register steps taken as restarts, jumps and gaps.
        self.published = 0
        self.steps = 0
        self.steps_by_kind: dict[str, int] = {"restart": 0, "jump": 0, "gap": 0}
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Take the devices of a reloaded config: new meters are accounted from their next
        reading, removed ones forgotten, the others carry on; buildings follow locations."""
        accounts: dict[PointKey, CounterAccount] = {}
        self._building, self._members = {}, {}
        counters = set(self.settings.counters)
        for dev in config.devices:
            if not dev.enabled:
                continue
            for point in sorted(counters & dev.point_names()):
                key = PointKey(dev.id, point)
                accounts[key] = self.accounts.get(key) or CounterAccount(
                    self.settings.periods, self.tz, max_gap=self.settings.max_gap,
                    max_per_hour=self.settings.max_per_hour.get(point))
                if dev.location.building:
                    self._building[dev.id] = dev.location.building
                    self._members.setdefault((dev.location.building, point), set()).add(dev.id)
        self.accounts = accounts

    async def run(self, feed: Subscription) -> None:
        """Account every reading of ``feed`` until cancelled; saves the state on the way out."""
        await self.load()
        try:
            while True:
                for reading in await feed.get_batch():  # one queue operation per batch
                    await self.account(reading)
                if self._dirty and self.clock.monotonic() >= self._next_save:
                    await self.save()
        finally:
            if self._dirty:
                with contextlib.suppress(Exception):
                    # Shielded and time-boxed: the last intervals survive a clean stop.
                    async with asyncio.timeout(_SAVE_TIMEOUT):
                        await asyncio.shield(self.save())

    async def account(self, reading: Reading) -> None:
        """Take one reading; publishes the intervals it finished."""
        acct = self.accounts.get(reading.key)
        value = reading.value
        if acct is None or not reading.good or not isinstance(value, int | float) \
                or isinstance(value, bool):
            return
        closed, step = acct.feed(reading.received_ts, float(value))
        self._dirty = True
        if step is not None:
            self._log_step(reading.key, step)
        if closed:
            for interval in closed:
                await self._close(reading.key, interval)
            # Soon, not at once: every meter closes its hour within one poll of the others,
            # and one write covers them all.
            self._next_save = min(self._next_save, self.clock.monotonic() + _CLOSE_SAVE_DELAY)

    async def load(self) -> None:
        """Carry on from the state file, if there is one."""
        if self.path is None:
            log.warning("accounting: no state_dir configured: the last register values are "
                        "kept in memory, and after a restart the first interval of each meter "
                        "is not published")
            return
        try:
            state = await asyncio.to_thread(_read, self.path)
        except (OSError, ValueError) as exc:
            log.warning("accounting: state file %s cannot be read (%s); starting afresh: the "
                        "first interval of each meter is not published", self.path, exc)
            return
        if state is None:
            return
        for key, acct in self.accounts.items():
            saved = state.get("meters", {}).get(str(key))
            if isinstance(saved, dict):
                acct.restore(saved)
        for row in state.get("buildings", []):
            building, point, period, start, total, done, complete = row
            members = self._members.get((building, point))
            if members is None:
                continue
            self._pending[(building, point, period, float(start))] = _Pending(
                float(total), set(done) & members, bool(complete))

    async def save(self) -> None:
        """Write the state file now (a no-op without a path)."""
        self._dirty = False
        self._next_save = self.clock.monotonic() + self.settings.save_every
        if self.path is None:
            return
        state = {"version": _STATE_VERSION,
                 "meters": {str(k): a.to_state() for k, a in self.accounts.items()},
                 "buildings": [[b, pt, per, start, p.total, sorted(p.done), p.complete]
                               for (b, pt, per, start), p in self._pending.items()]}
        try:
            await _in_thread(_write, self.path, state)
        except OSError as exc:
            self._dirty = True
            log.warning("accounting: state file %s cannot be written: %s", self.path, exc)

    async def _close(self, key: PointKey, interval: Closed) -> None:
        point = f"{key.point}_{interval.period}"
        if interval.value is not None:
            await self._emit(key.device, point, interval)
        building = self._building.get(key.device)
        if building is None:
            return
        members = self._members[(building, key.point)]
        pkey = (building, key.point, interval.period, interval.start)
        pending = self._pending.setdefault(pkey, _Pending())
        pending.done.add(key.device)
        if interval.value is None:
            pending.complete = False
        else:
            pending.total += interval.value
        if pending.done >= members:
            del self._pending[pkey]
            if pending.complete:
                await self._emit(BUILDING_PREFIX + building, point,
                                 Closed(interval.period, interval.start, interval.end,
                                        pending.total))
        self._forget_stale(interval.start)

    async def _emit(self, device: str, point: str, interval: Closed) -> None:
        assert interval.value is not None
        self.published += 1
        await self.publish(Reading(device=device, point=point,
                                   value=round(interval.value, 6), quality=Quality.GOOD,
                                   received_ts=interval.start, source_ts=interval.start))

    def _forget_stale(self, now_start: float) -> None:
        """Drop building sums a silent meter has held up for longer than ``max_gap``: that
        meter would close them incomplete anyway."""
        limit = now_start - self.settings.max_gap
        for pkey in [k for k in self._pending if k[3] < limit]:
            del self._pending[pkey]

    def _log_step(self, key: PointKey, step: Step) -> None:
        self.steps += 1
        self.steps_by_kind[step.kind] = self.steps_by_kind.get(step.kind, 0) + 1
        if step.kind == "gap":
            log.warning("accounting: %s silent for %.1f h (more than max_gap): its consumption "
                        "over the silence (%g to %g) is not apportioned, and the intervals "
                        "it covers are not published", key, step.seconds / 3600, step.before,
                        step.after)
        elif step.kind == "restart":
            log.warning("accounting: %s went back from %g to %g: taken as a register reset or "
                        "a replaced meter; counting carries on from %g", key, step.before,
                        step.after, step.after)
        else:
            log.warning("accounting: %s jumped from %g to %g in %.0f s, more than max_per_hour "
                        "allows: taken as a replaced meter; counting carries on from %g", key,
                        step.before, step.after, step.seconds, step.after)


async def _in_thread(write: Callable[[Path, dict[str, Any]], None], path: Path,
                     state: dict[str, Any]) -> None:
    """Run ``write`` in a worker thread and wait for it even when cancelled: a thread cannot be
    stopped, and one still writing after the stage stopped would race the next writer."""
    task = asyncio.ensure_future(asyncio.to_thread(write, path, state))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=_SAVE_TIMEOUT)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("accounting: the state file could not be written: %s",
                        task.exception())
        raise


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():  # created by prepare() just before a first write was cut short
        return None
    state = json.loads(text)
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        raise ValueError(f"not an accounting state file of version {_STATE_VERSION}")
    return state


def _write(path: Path, state: dict[str, Any]) -> None:
    write_json(path, state)
