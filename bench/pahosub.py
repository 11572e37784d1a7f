"""The ceiling the suite compares the gateway with: a minimal paho subscriber (QoS 1) that
decodes each message's JSON and notes its latency from ``sent_us``, and nothing else.

Run by ``bench/suite.py`` as its own process, like ``propgw run``, on the same publisher. It
prints ``ready`` once subscribed; each line read from stdin asks for a JSON report
(messages received, p99 latency in ms) and EOF ends it. Bounded by ``--max-seconds``.

    python bench/pahosub.py --port P [--max-seconds 600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    lock = threading.Lock()
    latencies: list[float] = []
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        sent_us = json.loads(message.payload)["sent_us"]
        with lock:
            latencies.append(time.time() - sent_us / 1e6)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho-only")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", args.port)
    client.subscribe("bench/#", qos=1)
    client.loop_start()
    deadline = time.monotonic() + args.max_seconds
    try:
        if not subscribed.wait(10):
            return 1
        print("ready", flush=True)
        for _ in sys.stdin:
            with lock:
                seen = list(latencies)
            p99 = (statistics.quantiles(seen, n=100, method="inclusive")[98] * 1000
                   if len(seen) > 1 else 0.0)
            print(json.dumps({"received": len(seen), "p99_ms": p99}), flush=True)
            if time.monotonic() > deadline:
                break
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
