"""The device side of the suite's rig: one process publishing ``{ts, temp, hum, seq, sent_us}``
at a paced rate (QoS 1), with life-safety canaries and telemetry markers mixed in.

Run by ``bench/suite.py`` as a separate process (several at once for high rates), so that the
publisher's CPU is never the gateway's. Every loop is bounded by ``--seconds`` and a message
count. At the end it prints one JSON line: what it published, what the broker acknowledged,
the window it published in (wall clock), and the send time of every probe:

* a *canary* goes to ``bench/fire/<k>`` with ``temp`` 1000 + k: a fresh device per canary, over
  an at-once P0 threshold (the gateway reads these topics on its life-safety lane). Canaries
  have a connection of their own, as a fire panel is a device of its own: behind the meters'
  connection they would wait in this publisher's own queue whenever the broker is behind, and
  time the load generator instead of the broker and the gateway;
* a *marker* is an ordinary telemetry message of device ``n`` with ``temp`` 1000000 + k, over
  an at-once P3 threshold (it travels with the telemetry and measures that path); the next
  message of that device brings it back to normal.

    python bench/loadgen.py --port P --rate 1000 --seconds 10 --devices 0-9
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

#: Publisher-side bound on messages sent but not yet acknowledged by the broker: beyond it the
#: publisher waits (and its achieved rate says so) rather than queueing without bound.
MAX_UNACKED = 20_000
_TICK = 0.002  # seconds between pacing checks
CANARY_BASE = 1000
MARKER_BASE = 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages/s, this process")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--devices", default="0-9", help="device numbers: A-B")
    parser.add_argument("--canary-rate", type=float, default=0.0, help="canaries/s")
    parser.add_argument("--marker-rate", type=float, default=0.0, help="markers/s")
    parser.add_argument("--client-id", default="bench-load")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.devices.split("-"))
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    panel = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{args.client_id}-panel")
    load = Load(client, panel, list(range(first, last + 1)))
    client.on_publish = load.on_publish
    panel.on_publish = load.on_panel_publish
    clients = (client, panel) if args.canary_rate else (client,)
    for c in clients:
        c.connect("127.0.0.1", args.port)
        c.loop_start()
    try:
        report = load.run(args.rate, args.seconds, args.canary_rate, args.marker_rate)
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
    print(json.dumps(report), flush=True)
    return 0


class Load:
    """Paced publishing to one client; counts what the broker acknowledged."""

    def __init__(self, client: paho.Client, panel: paho.Client, devices: list[int]) -> None:
        self.client = client
        self.panel = panel
        self.devices = devices
        self._telemetry_acked = 0
        self._panel_acked = 0  # its own counter: each client's callbacks run on its own thread
        self.sent = 0
        self.seq = 0
        self.canaries: dict[int, int] = {}
        self.markers: dict[int, int] = {}
        self._marked: set[int] = set()  # devices whose last message was a marker

    @property
    def acked(self) -> int:
        return self._telemetry_acked + self._panel_acked

    def on_publish(self, _c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        self._telemetry_acked += 1

    def on_panel_publish(self, _c: object, _u: object, _mid: int, _rc: object,
                         _p: object) -> None:
        self._panel_acked += 1

    def run(self, rate: float, seconds: float, canary_rate: float,
            marker_rate: float) -> dict[str, object]:
        limit = int(rate * seconds) + 1
        start = time.time()
        end = start + seconds
        next_canary = start + 0.5 / canary_rate if canary_rate else end + 1
        next_marker = start + 0.25 / marker_rate if marker_rate else end + 1
        now = start
        while self.sent < limit and (now := time.time()) < end:
            due = min(int(rate * (now - start)) + 1 - self.sent, 1000)
            if self.sent - self.acked > MAX_UNACKED:
                due = 0  # the broker is behind: wait, and let the achieved rate show it
            for _ in range(max(due, 0)):
                if self.telemetry(mark=now >= next_marker):
                    next_marker += 1 / marker_rate
            if now >= next_canary:
                self.canary()
                next_canary += 1 / canary_rate
            time.sleep(_TICK)
        stop = time.time()
        drain = time.monotonic() + 15
        while self.acked < self.sent and time.monotonic() < drain:
            time.sleep(0.01)
        return {"published": self.sent, "acked": self.acked, "start": start, "stop": stop,
                "canaries": self.canaries, "markers": self.markers}

    def telemetry(self, *, mark: bool) -> bool:
        """One device message; a marker when ``mark`` and the device can take one."""
        device = self.devices[self.seq % len(self.devices)]
        us = time.time_ns() // 1000
        temp: float = 20.0 + self.seq % 7
        marked = mark and device not in self._marked
        if marked:
            k = len(self.markers)
            temp = MARKER_BASE + k
            self.markers[k] = us
            self._marked.add(device)
        else:
            self._marked.discard(device)
        self.client.publish(f"bench/{device}/data",
                            f'{{"ts":{us // 1000},"temp":{temp},"hum":{40 + self.seq % 11},'
                            f'"seq":{self.seq},"sent_us":{us}}}', qos=1)
        self.seq += 1
        self.sent += 1
        return marked

    def canary(self) -> None:
        k = len(self.canaries)
        us = time.time_ns() // 1000
        self.panel.publish(f"bench/fire/{k}",
                            f'{{"ts":{us // 1000},"temp":{CANARY_BASE + k},"hum":0,'
                            f'"seq":{k},"sent_us":{us}}}', qos=1)
        self.canaries[k] = us
        self.sent += 1


if __name__ == "__main__":
    sys.exit(main())
