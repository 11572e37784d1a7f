"""CPU per message of the MQTT client path, and of the whole gateway, at 1,000 QoS 1 msg/s.

A publisher process (paho, its own thread) sends ``--rate`` QoS 1 messages per second,
``{ts, temp, hum, seq, sent_us}``, round robin on ``bench/<n>/data`` for 10 devices, to a real
mosquitto on loopback. What is measured is the CPU time (user + system, every thread) of the
*receiving* process over ``--seconds`` after ``--warmup`` seconds; nothing else.

``clients``: one receiving process per client variant, each taking a message to an asyncio
consumer task (JSON parsed once there) and acknowledging it only once taken:

* ``aiomqtt``: aiomqtt 2.5.1 as the gateway uses it (paho manual ack; ``ack`` after the
  consumer took the message). Per PUBACK paho writes a byte to its self-pipe pair, aiomqtt
  adds the socket writer via ``call_soon_threadsafe`` (a loop wake-up) and removes it again.
* ``aiomqtt-tuned``: the same, with the writer registration the gateway's device links use
  (``gateway.mqtt_lane``): a PUBACK is written at the end of the loop iteration that queued
  it (acknowledgements of one read coalesce into one ``send``), and the writer is added only
  when the socket would block.
* ``aiomqtt-buffered``: ``aiomqtt-tuned`` plus the buffered reads of the device links
  (``gateway.mqtt_lane``): one ``recv`` of up to 64 KiB serves paho's small reads, and
  aiomqtt's reader callback takes every packet of the chunk in one readiness event.
* ``lane``: the gateway's device-link path itself: ``gateway.mqtt_lane.Lane`` installed on
  a client built by ``gateway.mqtt_client.build_client`` (manual ack, coalesced writes,
  buffered reads, the lane's queue) and read with ``Lane.messages``, acknowledged with
  ``Lane.taken``.
* ``paho-thread``: paho's own network thread (``loop_start``); ``on_message`` appends to a
  list and wakes the event loop once per batch (``call_soon_threadsafe`` only when the list
  was empty); the consumer acknowledges from the loop thread.
* ``gmqtt``: gmqtt 0.8.0 (pure asyncio protocol), ``optimistic_acknowledgement=False``:
  PUBACK once the async ``on_message`` has put the message on the consumer's queue.
  Needs ``--gmqtt-path`` (a folder gmqtt is installed in): not a dependency of propgw.
* ``gmqtt-lane``: gmqtt as a device link would need it: the async ``on_message`` queues the
  message with a future and returns (PUBACK) only once the consumer took it and resolved
  the future, as ``Lane.taken`` does (gmqtt's ``on_message`` is not given the packet id).
* ``paho-only``: paho thread, automatic ack, JSON parsed in ``on_message``: the ceiling.

``gateway``: a real ``propgw run`` from each ``--tree`` (alternating, ``--runs`` times) with the
10 devices (4 points each, the device timestamp from ``ts``), a P3 rule on ``temp`` and a
life-safety fire panel on its own topic; the gateway process's CPU over the window.

    .venv/bin/python bench/mqtt_client_path.py clients [--rate 1000] [--seconds 20]
    .venv/bin/python bench/mqtt_client_path.py gateway --tree /work/main --tree .
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procstats import cpu_seconds  # noqa: E402

from tests.support import Mosquitto  # noqa: E402

DEVICES = 10
VARIANTS = ("aiomqtt", "aiomqtt-tuned", "aiomqtt-buffered", "lane", "paho-thread", "gmqtt",
            "gmqtt-lane", "paho-only")

PUBLISHER = """
import json, sys, time
import paho.mqtt.client as mqtt

port, rate = int(sys.argv[1]), int(sys.argv[2])
seconds, devices = float(sys.argv[3]), int(sys.argv[4])
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-devices")
client.max_inflight_messages_set(1000)
client.connect("127.0.0.1", port)
client.loop_start()
tick = 0.01
per_tick = rate * tick
start = time.monotonic()
sent = 0
due = 0.0
n = 0
while time.monotonic() - start < seconds:
    due += per_tick
    while sent < int(due):
        now = time.time()
        body = {"ts": round(now, 3), "temp": 20.0 + (sent % 50) / 10, "hum": 40 + sent % 7,
                "seq": sent, "sent_us": int(now * 1e6)}
        client.publish(f"bench/{n}/data", json.dumps(body), qos=1)
        n = (n + 1) % devices
        sent += 1
    time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
client.disconnect()
client.loop_stop()
print(sent)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    clients = sub.add_parser("clients")
    clients.add_argument("--variants", nargs="*", default=list(VARIANTS))
    clients.add_argument("--gmqtt-path", default=None)
    gateway = sub.add_parser("gateway")
    gateway.add_argument("--tree", action="append", required=True)
    for p in (clients, gateway):
        p.add_argument("--rate", type=int, default=1000)
        p.add_argument("--seconds", type=float, default=20.0)
        p.add_argument("--warmup", type=float, default=5.0)
        p.add_argument("--runs", type=int, default=3)
    receive = sub.add_parser("_receive")  # one receiving process (internal)
    receive.add_argument("variant")
    receive.add_argument("port", type=int)
    receive.add_argument("warmup", type=float)
    receive.add_argument("seconds", type=float)
    args = parser.parse_args()
    if args.what == "_receive":
        print(json.dumps(_receive(args.variant, args.port, args.warmup, args.seconds)))
        return
    with tempfile.TemporaryDirectory() as name:
        broker = Mosquitto(Path(name))
        broker.start()
        try:
            if args.what == "clients":
                _clients(args, broker.port)
            else:
                _gateways(args, broker.port, Path(name))
        finally:
            broker.stop()


# ----------------------------------------------------------------------------- drivers


def _publisher(port: int, rate: int, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(rate),
                             str(seconds), str(DEVICES)], stdout=subprocess.PIPE)


def _clients(args: argparse.Namespace, port: int) -> None:
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    env = dict(os.environ)
    if args.gmqtt_path:
        env["PYTHONPATH"] = args.gmqtt_path + os.pathsep + env.get("PYTHONPATH", "")
    for _ in range(args.runs):
        for variant in args.variants:  # alternating: the machine's load hits every one
            recv = subprocess.Popen([sys.executable, __file__, "_receive", variant, str(port),
                                     str(args.warmup), str(args.seconds)],
                                    stdout=subprocess.PIPE, env=env)
            assert recv.stdout is not None
            recv.stdout.readline()  # "ready": connected and subscribed
            pub = _publisher(port, args.rate, args.warmup + args.seconds + 2)
            out, _ = recv.communicate(timeout=args.warmup + args.seconds + 60)
            pub.wait(timeout=60)
            row = json.loads(out)
            results[variant].append(row)
            print(f"  {variant:14s} {row['cpu_pct']:5.1f} % of a core, "
                  f"{row['us_per_msg']:5.1f} us/msg, {row['messages']:.0f} msgs", flush=True)
    print(f"\n{args.rate} msg/s QoS 1, {args.seconds:g} s after {args.warmup:g} s, "
          f"{args.runs} runs; receiving process CPU, median (min-max):")
    for variant, rows in results.items():
        pct = [r["cpu_pct"] for r in rows]
        us = [r["us_per_msg"] for r in rows]
        print(f"| {variant} | {statistics.median(pct):.1f} % ({min(pct):.1f}-{max(pct):.1f}) | "
              f"{statistics.median(us):.0f} us ({min(us):.0f}-{max(us):.0f}) |")


SITE = """
site: {{id: bench, name: bench, gateway_id: gw}}
state_dir: {state}
log_level: WARNING
brokers:
  devices: {{host: 127.0.0.1, port: {port}, client_id: bench-gw-{tag}}}
devices:
  - id: "s-{{n}}"
    driver: mqtt
    broker: devices
    kind: meter
    points:
      - {{name: temp, topic: "bench/{{n}}/data", path: temp, type: number, timestamp_path: ts}}
      - {{name: hum, topic: "bench/{{n}}/data", path: hum, type: number, timestamp_path: ts}}
      - {{name: seq, topic: "bench/{{n}}/data", path: seq, type: int, timestamp_path: ts}}
      - {{name: sent_us, topic: "bench/{{n}}/data", path: sent_us, type: int,
          timestamp_path: ts}}
  - id: "panel-{{n}}"
    driver: mqtt
    broker: devices
    kind: fire_panel
    points:
      - {{name: fire, topic: "fire/{{n}}", path: fire, type: bool}}
rules:
  - id: fire
    kind: fire_panel
    category: fire_alarm
    priority: P0
    when: {{point: fire, eq: true}}
    message: {{zh: "{{device_name}}火警", en: "{{device_name}} fire"}}
  - id: hot
    kind: meter
    category: comfort
    priority: P3
    when: {{point: temp, gt: 1000000}}
    message: {{zh: "{{device_name}}过热", en: "{{device_name}} hot"}}
"""


def _gateways(args: argparse.Namespace, port: int, tmp: Path) -> None:
    results: dict[str, list[float]] = {t: [] for t in args.tree}
    for run in range(args.runs):
        for i, tree in enumerate(args.tree):
            root = Path(tree).resolve()
            state = tmp / f"state-{run}-{i}"
            state.mkdir()
            config = tmp / f"site-{run}-{i}.yaml"
            config.write_text(SITE.format(state=state, port=port, tag=f"{run}-{i}"),
                              encoding="utf-8")
            gw = subprocess.Popen([str(root / ".venv" / "bin" / "propgw"), "run", "-c",
                                   str(config)], cwd=root, stdout=subprocess.DEVNULL)
            try:
                time.sleep(3.0)  # start-up and imports: not measured
                pub = _publisher(port, args.rate, args.warmup + args.seconds + 1)
                time.sleep(args.warmup)
                before, t0 = cpu_seconds(gw.pid), time.monotonic()
                time.sleep(args.seconds)
                used, window = cpu_seconds(gw.pid) - before, time.monotonic() - t0
                pub.wait(timeout=60)
            finally:
                gw.terminate()
                gw.wait(timeout=30)
            pct = 100 * used / window
            results[tree].append(pct)
            print(f"  {tree}: {pct:5.1f} % of a core "
                  f"({1e6 * used / (args.rate * window):.0f} us/msg)", flush=True)
    print(f"\n{args.rate} msg/s QoS 1 (4 readings each), {args.seconds:g} s after "
          f"{args.warmup:g} s, {args.runs} runs alternating; gateway process CPU:")
    for tree, pcts in results.items():
        us = [1e4 * p / args.rate for p in pcts]
        print(f"| {tree} | {statistics.median(pcts):.1f} % ({min(pcts):.1f}-{max(pcts):.1f}) "
              f"| {statistics.median(us):.0f} us/msg |")


# ----------------------------------------------------------------------------- receivers


class _Window:
    """CPU time over the measured window, which starts ``warmup`` s after the first message."""

    def __init__(self, warmup: float, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.count = 0
        self.first: float | None = None
        self.start: tuple[float, float, int] | None = None
        self.result: dict[str, float] | None = None
        self.done = asyncio.Event()

    def took(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.first is None:
            self.first = now
        elif self.start is None and now - self.first >= self.warmup:
            self.start = (now, time.process_time(), self.count)
        elif self.start is not None and self.result is None \
                and now - self.start[0] >= self.seconds:
            wall, cpu = now - self.start[0], time.process_time() - self.start[1]
            messages = self.count - self.start[2]
            self.result = {"cpu_pct": 100 * cpu / wall, "us_per_msg": 1e6 * cpu / messages,
                           "messages": messages, "rate": messages / wall}
            self.done.set()


def _ready() -> None:
    print("ready", flush=True)


def _receive(variant: str, port: int, warmup: float, seconds: float) -> dict[str, float]:
    window = _Window(warmup, seconds)
    runner = {"aiomqtt": _aiomqtt, "aiomqtt-tuned": _aiomqtt, "aiomqtt-buffered": _aiomqtt,
              "lane": _lane, "paho-thread": _paho_thread, "gmqtt": _gmqtt,
              "gmqtt-lane": _gmqtt_lane, "paho-only": _paho_only}[variant]
    asyncio.run(runner(port, window, variant))
    assert window.result is not None
    return window.result


async def _aiomqtt(port: int, window: _Window, variant: str) -> None:
    import aiomqtt

    client = aiomqtt.Client("127.0.0.1", port, identifier=f"bench-{variant}")
    paho = client._client
    paho.manual_ack_set(True)
    if variant in ("aiomqtt-tuned", "aiomqtt-buffered"):
        from gateway.mqtt_client import coalesce_writes
        from gateway.mqtt_lane import _buffer_reads

        coalesce_writes(client)
        if variant == "aiomqtt-buffered":
            _buffer_reads(client, 0.0)  # reading at once, as measured
    async with client:
        await client.subscribe("bench/+/data", qos=1)
        _ready()
        async for message in client.messages:
            json.loads(message.payload)
            paho.ack(message.mid, message.qos)
            window.took()
            if window.done.is_set():
                return


async def _lane(port: int, window: _Window, variant: str) -> None:
    from gateway.config import BrokerConfig
    from gateway.mqtt_client import build_client
    from gateway.mqtt_lane import Lane

    lane = Lane("telemetry", capacity=10_000, sheds=True)
    cfg = BrokerConfig.model_validate({"host": "127.0.0.1", "port": port})
    client = await build_client(cfg, client_id=f"bench-{variant}")
    lane.install(client)
    async with client:
        await client.subscribe("bench/+/data", qos=1)
        _ready()
        async for message in lane.messages(client):
            json.loads(message.payload)
            lane.taken(client, message)
            window.took()
            if window.done.is_set():
                return


async def _paho_thread(port: int, window: _Window, variant: str) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    pending: list[Any] = []

    def hand_over() -> None:
        batch = pending[:]
        pending.clear()
        queue.put_nowait(batch)

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        was_empty = not pending
        pending.append(message)
        if was_empty:
            loop.call_soon_threadsafe(hand_over)

    client = await _paho_subscribed(port, variant, on_message, manual_ack=True)
    try:
        while not window.done.is_set():
            batch = await queue.get()
            for message in batch:
                json.loads(message.payload)
                client.ack(message.mid, message.qos)
            window.took(len(batch))
    finally:
        client.disconnect()
        client.loop_stop()


async def _paho_subscribed(port: int, variant: str, on_message: Any, *,
                           manual_ack: bool) -> Any:
    """A paho client on its own thread, subscribed and ready."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{variant}",
                         manual_ack=manual_ack)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("bench/+/data", qos=1)
    client.loop_start()
    await asyncio.sleep(0.5)  # SUBACK
    _ready()
    return client


async def _gmqtt_subscribed(port: int, variant: str, on_message: Any) -> Any:
    """A gmqtt client that acknowledges once ``on_message`` returns, subscribed and ready."""
    import gmqtt

    client = gmqtt.Client(f"bench-{variant}", optimistic_acknowledgement=False)
    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv311)
    client.subscribe("bench/+/data", qos=1)
    await asyncio.sleep(0.5)  # SUBACK
    _ready()
    return client


async def _gmqtt(port: int, window: _Window, variant: str) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(1000)

    async def on_message(_c: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        await queue.put(payload)
        return 0

    client = await _gmqtt_subscribed(port, variant, on_message)
    try:
        while not window.done.is_set():
            json.loads(await queue.get())
            window.took()
    finally:
        await client.disconnect()


async def _gmqtt_lane(port: int, window: _Window, variant: str) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bytes, asyncio.Future[int]]] = asyncio.Queue()

    async def on_message(_c: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        taken: asyncio.Future[int] = loop.create_future()
        queue.put_nowait((payload, taken))
        return await taken  # the PUBACK's reason code, sent by gmqtt when this returns

    client = await _gmqtt_subscribed(port, variant, on_message)
    try:
        while not window.done.is_set():
            payload, taken = await queue.get()
            json.loads(payload)
            taken.set_result(0)
            window.took()
    finally:
        while not queue.empty():  # else gmqtt logs each cancelled on_message with a traceback
            queue.get_nowait()[1].set_result(0)
        await client.disconnect()


async def _paho_only(port: int, window: _Window, variant: str) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        json.loads(message.payload)
        window.took()
        if window.result is not None and not done.is_set():
            loop.call_soon_threadsafe(done.set)

    client = await _paho_subscribed(port, variant, on_message, manual_ack=False)
    try:
        await done.wait()
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
