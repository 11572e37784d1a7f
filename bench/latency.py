"""Detection-to-upstream latency of a work order and of its alarm message, under load.

Measures, on this machine, the time from the moment the gateway sees an entrapment condition
become true *after the rule's own on-delay* (``AlarmEvent.mono``, taken by the alarm engine) to
the moment a platform-side subscriber on the upstream mosquitto receives the work order. The
path measured is the real one: MQTT device message → driver → bus → alarm engine → work-order
desk → SQLite outbox commit (WAL, ``synchronous=FULL``) → upstream publisher → mosquitto → the
subscriber (a paho client in its own thread, as the platform would be another process).

Background load, bounded in count and time, loopback only:

* ``--device-rate`` telemetry readings per second from ``--meters`` simulated meters published
  to the device-side mosquitto (decoded, put on the bus and evaluated by a rule each);
* ``--upstream-rate`` telemetry messages per second queued in the outbox for upstream (the
  work order must overtake them: life-safety first).

Each run traps a passenger in another elevator; ``--runs`` runs, p50/p99 reported, once
idle and once under load, for the work order and for the alarm message (``alarms`` channel) of
the same activation, measured from the same ``AlarmEvent.mono``: the gap between the two is what
the work order pays on top of the alarm. Run: ``.venv/bin/python bench/latency.py [--runs 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alarms import AlarmEvent
from gateway.app import Gateway
from gateway.config import load_config_text
from gateway.outbox import OutboxItem
from gateway.workorders import WorkOrder
from tests.support import Mosquitto

SITE = """
site: {{id: bench, name: bench, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {dev}, max_queued_messages: 100000}}
  platform: {{host: 127.0.0.1, port: {up}}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
{elevators}
{meters}
rules:
  - {{id: trapped, kind: elevator, for: {delay}, when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 困人, en: trapped}}}}
  - {{id: overload, kind: energy_meter, for: 1m, when: {{point: power, gt: 1000000}},
     category: overload, priority: P2, message: {{zh: 过载, en: overload}}}}
"""


@dataclass
class Latencies:
    """Milliseconds, one value per entrapment."""

    #: Detection to the work order at the platform.
    orders: list[float]
    #: Detection to the alarm message at the platform.
    alarms: list[float]
    #: The work order's arrival after its alarm message's (paired per activation).
    gaps: list[float]


#: Load actually achieved during the last scenario's measurement.
ACHIEVED: dict[str, float] = {}


@dataclass
class Probe:
    """The gateway's observer and the platform's subscriber, meeting on the alarm id."""

    detected: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    #: Alarm id -> AlarmEvent.mono of its activation / arrival of its "active" alarm message.
    alarm_detected: dict[str, float] = field(default_factory=dict)
    alarm_received: dict[str, float] = field(default_factory=dict)
    #: Alarm id -> arrival of the work order it raised.
    order_received: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    #: AlarmEvent.mono of the activation each work order was raised for.
    pending_mono: float | None = None
    loop: asyncio.AbstractEventLoop | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def alarm(self, event: AlarmEvent) -> None:
        if event.state.value == "active":
            self.pending_mono = event.mono
            with self.lock:
                self.alarm_detected.setdefault(event.alarm_id, event.mono)

    def work_order(self, order: WorkOrder) -> None:
        # Called by the gateway right after the alarm event that raised it, before the commit.
        if order.seq == 1 and self.pending_mono is not None:
            with self.lock:
                self.detected[order.id] = self.pending_mono

    def on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        order = json.loads(message.payload)
        if message.topic.endswith("/alarms"):
            if order.get("state") == "active":
                with self.lock:
                    self.alarm_received.setdefault(order["alarm_id"], now)
            return
        if order.get("event") == "raised":
            with self.lock:
                self.received[order["id"]] = now
                self.order_received.setdefault(order["alarm_id"], now)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self.arrived.set)


async def scenario(runs: int, *, device_rate: int, upstream_rate: int, meters: int,
                   delay_ms: int, max_seconds: float) -> Latencies:
    """Latencies in milliseconds of ``runs`` entrapments."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "dev").mkdir()
        (work / "up").mkdir()
        dev, up = Mosquitto(work / "dev"), Mosquitto(work / "up")
        meter_lines = "\n".join(
            f"  - {{id: M{i}, driver: mqtt, kind: energy_meter, points: "
            f"[{{name: power, topic: tele/M{i}/power, type: number}}]}}" for i in range(meters))
        with dev.running(), up.running():
            # One elevator per run: one alarm raised repeatedly would (rightly) be treated as
            # chattering by the alarm lifecycle and not announced every time.
            elevators = "\n".join(
                f"  - {{id: E{i}, driver: mqtt, kind: elevator, points: "
                f"[{{name: trapped, topic: dev/E{i}/trapped, type: int}}]}}" for i in range(runs))
            config = load_config_text(SITE.format(state=work / "state", dev=dev.port,
                                                  up=up.port, meters=meter_lines,
                                                  elevators=elevators,
                                                  delay=f"{delay_ms}ms"))
            probe = Probe()
            subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id="platform")
            subscriber.on_message = probe.on_message
            subscriber.connect("127.0.0.1", up.port)
            subscriber.subscribe([("pm/bench/work-orders", 1), ("pm/bench/alarms", 1)])
            subscriber.loop_start()
            try:
                return await _measure(config, probe, runs, dev.port, device_rate=device_rate,
                                      upstream_rate=upstream_rate, meters=meters,
                                      delay_ms=delay_ms, max_seconds=max_seconds)
            finally:
                subscriber.loop_stop()
                subscriber.disconnect()


async def _measure(config: object, probe: Probe, runs: int, dev_port: int, *, device_rate: int,
                   upstream_rate: int, meters: int, delay_ms: int,
                   max_seconds: float) -> Latencies:
    from gateway.config import GatewayConfig
    assert isinstance(config, GatewayConfig)
    probe.loop = asyncio.get_running_loop()
    gateway = Gateway(config, observers=[probe])
    stop = asyncio.Event()
    deadline = time.monotonic() + max_seconds
    started = 0.0
    async with asyncio.TaskGroup() as tg:
        tg.create_task(gateway.run(shutdown_trigger=stop.wait))
        await gateway.started.wait()
        await asyncio.sleep(1.5)  # drivers and upstream connect and subscribe
        loads = []
        if device_rate:
            loads.append(tg.create_task(_device_load(dev_port, device_rate, meters, stop)))
        if upstream_rate:
            loads.append(tg.create_task(_upstream_load(gateway, upstream_rate, stop)))
        await asyncio.sleep(1.0 if loads else 0.1)  # let the load settle in
        started = time.monotonic()
        readings0 = gateway.bus.published
        sent0 = gateway.upstream.sent if gateway.upstream else 0
        async with aiomqtt.Client("127.0.0.1", dev_port) as device:
            for i in range(runs):
                if time.monotonic() > deadline:
                    break
                probe.arrived.clear()
                await device.publish(f"dev/E{i}/trapped", "1", qos=1)
                async with asyncio.timeout(10):
                    await probe.arrived.wait()
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        ACHIEVED["readings/s"] = (gateway.bus.published - readings0) / elapsed
        ACHIEVED["upstream msgs/s"] = ((gateway.upstream.sent if gateway.upstream else 0)
                                       - sent0) / elapsed
        stop.set()
    with probe.lock:
        orders = [(probe.received[k] - mono) * 1000 for k, mono in probe.detected.items()
                  if k in probe.received]
        alarms = [(probe.alarm_received[k] - mono) * 1000
                  for k, mono in probe.alarm_detected.items() if k in probe.alarm_received]
        gaps = [(probe.order_received[k] - t) * 1000 for k, t in probe.alarm_received.items()
                if k in probe.order_received]
        return Latencies(orders, alarms, gaps)


async def _device_load(port: int, rate: int, meters: int, stop: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, max_queued_outgoing_messages=10_000) as client:
        n = 0
        start = time.monotonic()
        while not stop.is_set() and n < rate * 600:  # bounded: at most 10 minutes' worth
            await client.publish(f"tele/M{n % meters}/power", str(100 + n % 50), qos=0)
            n += 1
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def _upstream_load(gateway: Gateway, rate: int, stop: asyncio.Event) -> None:
    assert gateway.outbox is not None
    n = 0
    start = time.monotonic()
    while not stop.is_set() and n < rate * 600:
        payload = json.dumps({"meter": f"M{n % 20}", "power": 100 + n % 50}).encode()
        await gateway.outbox.put(OutboxItem(kind="telemetry", channel="telemetry",
                                            key=f"t{n}", payload=payload))
        n += 1
        ahead = n / rate - (time.monotonic() - start)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _row(name: str, lat: list[float]) -> str:
    lat = sorted(lat)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return (f"| {name} | {len(lat)} | {statistics.median(lat):.1f} | {q[89]:.1f} | "
            f"{q[98]:.1f} | {lat[-1]:.1f} |")


def _rows(scenario: str, lat: Latencies) -> None:
    print(_row(f"{scenario}: work order", lat.orders))
    print(_row(f"{scenario}: alarm message", lat.alarms))
    print(_row(f"{scenario}: work order after its alarm message", lat.gaps), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--device-rate", type=int, default=2000, help="readings/s")
    parser.add_argument("--upstream-rate", type=int, default=500, help="telemetry msgs/s")
    parser.add_argument("--delay-ms", type=int, default=200, help="the rule's on-delay")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.getLevelName(os.environ.get("BENCH_LOG", "ERROR")))
    print(f"machine: {platform.machine()}, Python {sys.version.split()[0]}, "
          f"{args.runs} runs per scenario")
    print("| scenario | runs | p50 ms | p90 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    idle = asyncio.run(scenario(args.runs, device_rate=0, upstream_rate=0, meters=args.meters,
                                delay_ms=args.delay_ms, max_seconds=args.max_seconds))
    _rows("idle", idle)
    loaded = asyncio.run(scenario(args.runs, device_rate=args.device_rate,
                                  upstream_rate=args.upstream_rate, meters=args.meters,
                                  delay_ms=args.delay_ms, max_seconds=args.max_seconds))
    load = (f"load: {args.device_rate} readings/s from {args.meters} meters + "
            f"{args.upstream_rate} upstream telemetry msgs/s")
    _rows(load, loaded)
    print("achieved under load: " + ", ".join(f"{v:.0f} {k}" for k, v in ACHIEVED.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
