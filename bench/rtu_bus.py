"""Modbus RTU bus poll cycle: many simulated meters on one serial line, one gateway link.

Runs the setup of ``tests/test_sim_meters_rtu.py``: a socat pty pair, a
:class:`~simulators.meters.MeterBus` of N meters (distinct unit ids) on one end, and the
gateway's own :class:`~drivers.modbus.ModbusLink`, built from a site config that uses the
shipped profiles, on the other. Every device is polled back to back (``poll_interval`` at its
50 ms minimum, so the link is never idle) and the time between two complete sets of readings
from all N meters is the poll-cycle time.

It prints one Markdown table row per (model, baud rate) with the measured cycle and the wire
budget for the same reads (docs/facility-rules.md#modbus-rtu-timing):

    per read:  (8-byte request + (5 + 2N)-byte response) × 11 bits / baud  +  2 × t3.5
               + slave turnaround (5 ms typical .. 60 ms worst, JUMO LOGOSCREEN nt manual)

A pty has no baud-rate timing: bytes cross it at memory speed, so the *measured* time is
software overhead (pymodbus framing, the link's t3.5 pauses, the simulator), not wire time.
The wire budget is computed, not measured.

Usage (from the repository root)::

    .venv/bin/python bench/rtu_bus.py                       # 50 meters, 9600 and 19200
    .venv/bin/python bench/rtu_bus.py --meters 30 --bauds 9600 --models sdm630 --cycles 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.modbus import ModbusLink, build_modbus_links, silent_interval
from gateway.clock import SystemClock
from gateway.config import load_config_text
from gateway.model import Reading
from simulators.meters import MeterBus, MeterModel
from simulators.virtual_serial import pty_pair

#: Modbus serial line v1.02 counts 11 bits per character (start, 8 data, parity or a second
#: stop bit, stop); 8N1 really sends 10, so the budget is about 10 % on the safe side.
BITS_PER_CHAR = 11
REQUEST_BYTES = 8          # unit, FC, address (2), count (2), CRC (2)
RESPONSE_OVERHEAD = 5      # unit, FC, byte count, CRC (2); plus 2 bytes per register
TURNAROUND = (0.005, 0.060)  # typical 5-45 ms, one vendor 60 ms max (facility-rules.md)
MODEL_SETS: dict[str, list[MeterModel]] = {
    "sdm630": ["sdm630"], "dtsu666": ["dtsu666"], "water": ["water"],
    "mixed": ["sdm630", "dtsu666", "water"],
}


@dataclass(frozen=True)
class Row:
    """One measurement."""

    meters: int
    model: str
    baud: int
    registers_per_meter: float
    reads_per_cycle: int
    cycles: list[float]
    wire: float

    @property
    def measured(self) -> float:
        return statistics.median(self.cycles)

    def budget(self, turnaround: float) -> float:
        return self.wire + self.reads_per_cycle * turnaround


class CycleClock:
    """A reading sink that timestamps each complete poll cycle of the whole bus."""

    def __init__(self, points: dict[str, int], cycles: int) -> None:
        self._points = points
        self._seen: dict[str, int] = dict.fromkeys(points, 0)
        self._wanted = cycles
        self.bad = 0
        #: Monotonic time at which every device had delivered k full sets (k = 1, 2...).
        self.completed: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        for reading in readings:
            self._take(reading)

    def _take(self, reading: Reading) -> None:
        if not reading.good:
            self.bad += 1
        self._seen[reading.device] += 1
        full = min(n // self._points[d] for d, n in self._seen.items())
        if full > len(self.completed):
            self.completed.append(time.monotonic())
            if len(self.completed) > self._wanted:
                self.done.set()


def wire_time(link: ModbusLink, baud: int) -> float:
    """Seconds on the wire (frames and t3.5 gaps) for one cycle of the link's plan."""
    gap = silent_interval(baud)
    total = 0.0
    for device in link.device_ids:
        for block in link.plan(device):
            frame_bytes = REQUEST_BYTES + RESPONSE_OVERHEAD + 2 * block.count
            total += frame_bytes * BITS_PER_CHAR / baud + 2 * gap
    return total


async def measure(meters: int, model: str, baud: int, cycles: int, directory: Path) -> Row:
    """Run one bus and return its measured cycles and wire budget."""
    with pty_pair(directory) as (gw, bus_port):
        bus = MeterBus.build(meters, model=MODEL_SETS[model], seed=1, time_of_day=19.5 * 3600,
                             serial_port=bus_port, baudrate=baud)
        devices = "".join(
            f"  - {{id: {m.name}, driver: modbus-rtu, port: {gw}, baudrate: {baud}, "
            f"unit: {m.unit.unit_id}, profile: {m.register_map.profile}, "
            f"poll_interval: 50ms, timeout: 1s}}\n" for m in bus.meters)
        config = load_config_text("site: {id: bench, name: bench, gateway_id: g}\n"
                                  "devices:\n" + devices)
        (link,) = build_modbus_links(config.devices, SystemClock())
        points = {d: sum(len(b.points) for b in link.plan(d)) for d in link.device_ids}
        sink = CycleClock(points, cycles)
        async with bus:
            task = asyncio.create_task(link.run(sink), name=f"{link.name}.run")
            try:
                async with asyncio.timeout(60 + 10 * cycles):
                    await sink.done.wait()
            finally:
                task.cancel()
                await asyncio.wait({task})
        if sink.bad:
            raise RuntimeError(f"{sink.bad} readings were not good on {model} at {baud}")
        reads = sum(len(link.plan(d)) for d in link.device_ids)
        registers = sum(b.count for d in link.device_ids for b in link.plan(d))
        done = sink.completed
        # The first cycle includes opening the port; steady state is between completions.
        steady = [b - a for a, b in itertools.pairwise(done)]
        return Row(meters=meters, model=model, baud=baud,
                   registers_per_meter=registers / meters, reads_per_cycle=reads,
                   cycles=steady, wire=wire_time(link, baud))


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| meters | model | baud | registers read / meter | reads / cycle | measured cycle "
        "(pty, median) | measured / read | wire budget: frames + t3.5 | + turnaround 5 ms "
        "| + turnaround 60 ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        per_read_ms = r.measured / r.reads_per_cycle * 1000
        lines.append(
            f"| {r.meters} | {r.model} | {r.baud} | {r.registers_per_meter:.1f} "
            f"| {r.reads_per_cycle} | {r.measured:.2f} s | {per_read_ms:.1f} ms "
            f"| {r.wire:.2f} s | {r.budget(TURNAROUND[0]):.2f} s "
            f"| {r.budget(TURNAROUND[1]):.2f} s |")
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=50, help="meters on the bus (1..247)")
    parser.add_argument("--bauds", type=int, nargs="+", default=[9600, 19200])
    parser.add_argument("--models", nargs="+", default=["sdm630", "dtsu666", "water", "mixed"],
                        choices=sorted(MODEL_SETS))
    parser.add_argument("--cycles", type=int, default=3,
                        help="steady-state cycles measured after the first (default 3)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="rtu-bus-") as tmp:
        for model in args.models:
            for baud in args.bauds:
                directory = Path(tmp) / f"{model}-{baud}"
                directory.mkdir()
                rows.append(await measure(args.meters, model, baud, args.cycles, directory))
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
