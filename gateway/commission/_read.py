"""``propgw read``: print one poll of one device (see :mod:`gateway.commission`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.clock import SystemClock
from gateway.commission._cli import EXIT_BAD, EXIT_NO_ANSWER, EXIT_OK, EXIT_USAGE
from gateway.commission._modbus import poll_once
from gateway.commission._mqtt import Listener, Message
from gateway.commission._rows import PointRow, format_value, printable
from gateway.commission._select import Selection, UsageError, select_device
from gateway.commission._table import table
from gateway.config import (
    DerivedPoint,
    DeviceConfig,
    GatewayConfig,
    ModbusRtuDevice,
    ModbusTcpDevice,
    MqttDevice,
    load_config,
)
from gateway.model import Quality, Reading
from gateway.points import derive_once

__all__ = ["exit_status", "run_read"]

#: Payload text shown per message; the rest is cut (the decoded points are all shown).
_PAYLOAD_CHARS = 2000


def run_read(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``propgw read``; returns the exit status (see :mod:`gateway.commission._cli`)."""
    config = load_config(args.config)
    try:
        selection = select_device(config, args.device, args.points)
    except UsageError as exc:
        print(f"propgw read: {exc}", file=sys.stderr)
        return EXIT_USAGE
    device = selection.device
    print(_describe(device, selection.device_id), file=out)
    if not device.enabled:
        print("  (disabled in the config: the running gateway does not read it)", file=out)
    if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
        try:
            rows = asyncio.run(poll_once(device, selection.points, SystemClock()))
        except ValueError as exc:
            print(f"propgw read: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _print_modbus(rows, out)
        derived = _print_derived(selection, rows, out)
        return exit_status([*rows, *derived])
    return _read_mqtt(config, selection, args.timeout, out)


def exit_status(rows: Sequence[PointRow]) -> int:
    """0 all good, 1 some point had no answer, 3 some point answered badly (no comm-loss)."""
    if any(r.quality is Quality.COMM_LOSS for r in rows):
        return EXIT_NO_ANSWER
    if any(r.quality is Quality.BAD for r in rows):
        return EXIT_BAD
    return EXIT_OK


def _describe(device: DeviceConfig, asked: str | None) -> str:
    name = f" ({device.name})" if device.name else ""
    shown = asked or device.id
    if shown != device.id:
        name += f" (config device {device.id})"
    if isinstance(device, ModbusTcpDevice):
        where = f"modbus-tcp {device.host}:{device.port} unit {device.unit}"
    elif isinstance(device, ModbusRtuDevice):
        baud, parity, bits, stop = device.serial_settings
        where = f"modbus-rtu {device.port} {baud} {bits}{parity}{stop} unit {device.unit}"
    else:
        where = "mqtt"
    if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
        where += f", timeout {device.timeout:g}s, retries {device.retries}"
    return printable(f"{shown}{name}: {where}")


def _print_modbus(rows: Sequence[PointRow], out: TextIO) -> None:
    cells = [[r.point, r.source, r.decoding, r.raw or "-", format_value(r.value), r.unit,
              _quality(r)] for r in rows]
    for line in table(["POINT", "ADDRESS", "TYPE", "RAW", "VALUE", "UNIT", "QUALITY"], cells):
        print(printable(line), file=out)


def _read_mqtt(config: GatewayConfig, selection: Selection, timeout: float,
               out: TextIO) -> int:
    device = selection.device
    if not isinstance(device, MqttDevice):
        raise TypeError(device.id)
    try:
        tz = ZoneInfo(config.site.timezone)  # file I/O: before the loop starts
    except (ZoneInfoNotFoundError, ValueError):
        print(f"propgw read: unknown site.timezone {config.site.timezone!r}", file=sys.stderr)
        return EXIT_USAGE
    listener = Listener(config, selection, tz=tz, clock=SystemClock())
    broker = listener.broker
    print(printable(f"waiting up to {timeout:g}s for messages on "
                    f"{', '.join(listener.filters)} via broker {listener.broker_id} "
                    f"({broker.host}:{broker.effective_port})"), file=out, flush=True)

    def show(message: Message) -> None:
        _print_message(message, out)

    outcome = asyncio.run(listener.listen(timeout, show))
    if not outcome.messages:
        reason = (f"broker {listener.broker_id} unreachable: {outcome.broker_error}"
                  if outcome.broker_error else "the device sent nothing")
        print(printable(f"no message within {timeout:g}s ({reason})"), file=out)
        return EXIT_NO_ANSWER
    if outcome.missing:
        print(f"no message within {timeout:g}s for: {', '.join(outcome.missing)}", file=out)
    rows = [row for m in outcome.messages for row in m.rows]
    if len({m.device_id for m in outcome.messages}) == 1:
        rows += _print_derived(selection, rows, out)
    return EXIT_BAD if any(r.quality is Quality.BAD for r in rows) else EXIT_OK


def _print_message(message: Message, out: TextIO) -> None:
    retained = ", retained" if message.retained else ""
    print(file=out)
    print(printable(f"{message.device_id}: message on {message.topic} "
                    f"({len(message.payload)} bytes{retained}):"), file=out)
    try:
        text = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = "(not UTF-8) " + message.payload[:64].hex(" ")
    for line in (text or "(empty)").splitlines() or [""]:
        print("  " + printable(line, _PAYLOAD_CHARS), file=out)
    cells = [[r.point, r.decoding, format_value(r.value), r.unit, _quality(r)]
             for r in message.rows]
    for line in table(["POINT", "DECODING", "VALUE", "UNIT", "QUALITY"], cells):
        print("  " + printable(line), file=out)
    out.flush()


def _print_derived(selection: Selection, rows: Sequence[PointRow], out: TextIO
                   ) -> list[PointRow]:
    """The derived points asked for, computed from ``rows`` as the gateway would."""
    if not selection.derived or not rows:
        return []
    device = selection.device
    device_id = rows[-1].device
    clock = SystemClock()
    now = clock.time()
    readings = [Reading(device_id, r.point, r.value, r.quality, now, error=r.error)
                for r in rows]  # in arrival order: the last of a point wins
    made = {r.point: r for r in derive_once(device, device_id, readings, clock)}
    by_name = {d.name: d for d in device.derived}
    shown: list[PointRow] = []
    for name in selection.derived:
        reading = made.get(name)
        spec = by_name[name]
        shown.append(PointRow(
            device=device_id, point=name, source=_derivation(spec), decoding="derived", raw="",
            value=None if reading is None else reading.value,
            quality=Quality.BAD if reading is None else reading.quality, unit=spec.unit or "",
            error="an input has no value" if reading is None else reading.error))
    print(file=out)
    cells = [[r.point, r.source, format_value(r.value), r.unit, _quality(r)] for r in shown]
    for line in table(["DERIVED", "FROM", "VALUE", "UNIT", "QUALITY"], cells):
        print(printable(line), file=out)
    return shown


def _derivation(point: DerivedPoint) -> str:
    if point.expr is not None:
        text = point.expr
    else:
        text = f"{point.from_}" + (f" bit {point.bit}" if point.bit is not None else "")
    if point.map is not None:
        text += f" via map ({len(point.map)} entries"
        text += f", default {format_value(point.default)})" if point.default is not None \
            else ")"
    return text


def _quality(row: PointRow) -> str:
    return f"{row.quality}: {row.error}" if row.error else str(row.quality)
