"""``propgw watch``: the site's live values, polled and subscribed by the gateway's drivers.

The drivers push readings straight into a view (no queue in between): a table redrawn in place
at most :data:`REDRAW_INTERVAL` apart on a terminal, or one line per change otherwise, so the
output can be piped into ``grep`` or a log file. Memory is bounded by :data:`MAX_ROWS` (devices
whose id is a template can bring any number of concrete devices).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from drivers.base import Driver
from drivers.modbus import build_modbus_links
from drivers.mqtt import build_mqtt_drivers, is_template
from gateway.clock import SystemClock
from gateway.commission._cli import EXIT_OK, EXIT_USAGE, silence
from gateway.commission._rows import format_value, printable
from gateway.commission._select import UsageError, select_devices
from gateway.commission._table import table
from gateway.config import DeviceConfig, GatewayConfig, load_config
from gateway.model import Quality, Reading, Value
from gateway.points import PointStage

__all__ = ["MAX_ROWS", "REDRAW_INTERVAL", "LineView", "TableView", "run_watch"]

#: Most (device, point) rows kept; readings of further ones are counted, not shown.
MAX_ROWS = 5000
#: Shortest time between two redraws of the table.
REDRAW_INTERVAL = 0.25
_CLEAR = "\x1b[H\x1b[2J"


def run_watch(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``propgw watch`` until Ctrl-C, SIGTERM or ``--duration``."""
    config = load_config(args.config)
    try:
        devices = select_devices(config, args.devices)
    except UsageError as exc:
        print(f"propgw watch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    clock = SystemClock()
    watched = _watched_config(config, devices)
    drivers: list[Driver] = [*build_modbus_links(watched.devices, clock),
                             *build_mqtt_drivers(watched, clock)]
    view: LineView | TableView
    if out.isatty() and not args.lines:
        view = TableView(out, title=f"propgw watch {config.site.id}", units=_units(devices))
    else:
        view = LineView(out, units=_units(devices))
    for device in devices:
        if not is_template(device.id):
            for point in [*device.points, *device.derived]:
                view.expect(device.id, point.name)
    # Derived points and expired event values, exactly as the gateway computes them.
    points = PointStage(watched.devices, clock, view)
    asyncio.run(_watch(drivers, points, view, args.duration))
    return EXIT_OK


@dataclass(slots=True)
class _Row:
    value: Value = None
    quality: Quality | None = None
    error: str | None = None
    changed: float = 0.0  # time.time() of the last change, 0 = never read


class LineView:
    """One line per change of a point's value or quality: ``time device.point value unit``."""

    def __init__(self, out: TextIO, *, units: dict[tuple[str, str], str]) -> None:
        self.out = out
        self.rows: dict[tuple[str, str], _Row] = {}
        self.dropped = 0
        self.closed = asyncio.Event()  # the reader went away (a pipe into `head`)
        self._units = units

    def expect(self, device: str, point: str) -> None:
        """Show this point from the start (as not read yet)."""
        if len(self.rows) < MAX_ROWS:
            self.rows.setdefault((device, point), _Row())

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        """The drivers' sink."""
        for reading in readings:
            self.take(reading)

    def take(self, reading: Reading) -> None:
        """Show ``reading`` when it changes its point's line."""
        key = (reading.device, reading.point)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= MAX_ROWS:
                self.dropped += 1
                return
            row = self.rows[key] = _Row()
        if row.changed and (row.value, row.quality, row.error) == (
                reading.value, reading.quality, reading.error):
            return
        row.value, row.quality, row.error = reading.value, reading.quality, reading.error
        row.changed = reading.received_ts
        self.changed(key, row)

    def changed(self, key: tuple[str, str], row: _Row) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(row.changed))
        stamp += f".{int(row.changed * 1000) % 1000:03d}"
        self._write(printable(f"{stamp} {key[0]}.{key[1]} = {self.text(key, row)}") + "\n")

    def text(self, key: tuple[str, str], row: _Row) -> str:
        if row.quality is None:
            return "(not read yet)"
        if row.quality is not Quality.GOOD:
            return f"{row.quality}: {row.error or 'no value'}"
        unit = self._units.get(key) or self._units.get(("", key[1]), "")
        return format_value(row.value) + (f" {unit}" if unit else "")

    async def run(self) -> None:
        """Nothing to refresh: lines are written as readings arrive."""
        await asyncio.Event().wait()

    def _write(self, text: str) -> None:
        if self.closed.is_set():
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self.closed.set()


class TableView(LineView):
    """Every point in one table, redrawn in place when something changed."""

    def __init__(self, out: TextIO, *, title: str,
                 units: dict[tuple[str, str], str]) -> None:
        super().__init__(out, units=units)
        self.title = title
        self._dirty = asyncio.Event()

    def changed(self, key: tuple[str, str], row: _Row) -> None:
        self._dirty.set()

    async def run(self) -> None:
        self._draw()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._draw()
            await asyncio.sleep(REDRAW_INTERVAL)

    def _draw(self) -> None:
        size = shutil.get_terminal_size()
        now = time.time()
        cells = []
        for key, row in self.rows.items():
            age = f"{now - row.changed:.0f}s ago" if row.changed else ""
            cells.append([key[0], key[1], self.text(key, row), age])
        lines = table(["DEVICE", "POINT", "VALUE", "CHANGED"], cells)
        room = max(1, size.lines - 3)
        more = len(lines) - room
        shown = lines[:room] + ([f"... {more} more row(s): enlarge the window or name "
                                 "devices"] if more > 0 else [])
        dropped = f", {self.dropped} reading(s) beyond {MAX_ROWS} rows" if self.dropped else ""
        head = f"{self.title}  {time.strftime('%H:%M:%S')}  (Ctrl-C quits{dropped})"
        self._write(_CLEAR + "\n".join(printable(line[:size.columns * 2])
                                       for line in [head, "", *shown]) + "\n")


async def _watch(drivers: Sequence[Driver], points: PointStage, view: LineView,
                 duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(d.run(points.publish), name=f"watch.{d.name}")
                     for d in drivers]
            tasks.append(tg.create_task(points.run(), name="watch.points"))
            tasks.append(tg.create_task(view.run(), name="watch.view"))
            waits = [asyncio.ensure_future(stop.wait()),
                     asyncio.ensure_future(view.closed.wait())]
            try:
                await asyncio.wait(waits, timeout=duration,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [*tasks, *waits]:
                    task.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if view.closed.is_set():
        silence(view.out)


def _watched_config(config: GatewayConfig, devices: Sequence[DeviceConfig]) -> GatewayConfig:
    """The config reduced to the watched devices (enabled: they were asked for), with MQTT
    client ids of its own so that a gateway running on the same broker keeps its session."""
    pid = os.getpid()
    brokers = {bid: b.model_copy(update={"client_id": f"propgw-watch-{pid}-{bid}"})
               for bid, b in config.brokers.items()}
    enabled = [d if d.enabled else d.model_copy(update={"enabled": True}) for d in devices]
    return config.model_copy(update={"devices": enabled, "brokers": brokers})


def _units(devices: Sequence[DeviceConfig]) -> dict[tuple[str, str], str]:
    """Units by (device id, point); ``("", point)`` for devices whose id is a template (their
    readings carry concrete ids)."""
    return {("" if is_template(d.id) else d.id, p.name): p.unit
            for d in devices for p in [*d.points, *d.derived] if p.unit}

