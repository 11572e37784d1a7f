"""The suite's rig: two mosquitto brokers on loopback, ``propgw run`` as a child process, a
platform-side subscriber, the publishers, and the gateway's ``/metrics`` read as numbers.

Only public surfaces of the gateway are used: the site file, the ``propgw run`` command, the
Prometheus endpoint and the upstream messages (docs/upstream.md, docs/metrics.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from procstats import free_port, stop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import Mosquitto  # noqa: E402

PROPGW = str(Path(sys.executable).parent / "propgw")
#: The device broker as the shipped mosquitto/propgw.conf sets it up for a gateway.
#: $SYS every second: what the broker dropped is read from it after each step.
DEVICE_BROKER_CONF = ("set_tcp_nodelay true\nmax_queued_messages 5000\n"
                      "max_queued_bytes 8000000\nmax_inflight_messages 20\nsys_interval 1\n")
CANARY_BASE = 1000
MARKER_BASE = 1_000_000


def site_yaml(state: Path, dev: int, up: int, devices: int, metrics: int | None) -> str:
    """10 sensors with 4 readings per message, one P3 marker rule on them (no work order), and
    canary panels (one per canary, from the topic) with an at-once P0 fire rule."""
    def points(n: int) -> str:
        return "\n".join(
            f"      - {{name: {p}, topic: bench/{n}/data, path: {p}, type: {t}, "
            "timestamp_path: ts}" for p, t in (("temp", "number"), ("hum", "number"),
                                               ("seq", "int"), ("sent_us", "int")))

    sensors = "\n".join(f"""  - id: sensor-{n}
    driver: mqtt
    broker: devices
    kind: meter
    points:
{points(n)}""" for n in range(devices))
    metrics_line = f"metrics: {{port: {metrics}}}\n" if metrics else ""
    return f"""
site: {{id: bench, name: bench, gateway_id: gw1}}
state_dir: {state}
log_level: WARNING
brokers:
  devices: {{host: 127.0.0.1, port: {dev}}}
  platform: {{host: 127.0.0.1, port: {up}}}
upstream: {{broker: platform, topic_prefix: pm}}
{metrics_line}alarms:
  # Probes raise the same alarm again and again, at a steady pace: neither is an operator's
  # flood or chattering here, and both would hold messages back.
  chatter: {{activations: 1000000, window: 1s}}
  flood: {{start_above: 1000000, end_below: 1, window: 1s}}
devices:
{sensors}
  - id: "panel-{{k}}"
    driver: mqtt
    broker: devices
    kind: fire_panel
    points:
      - {{name: temp, topic: "bench/fire/{{k}}", path: temp, type: number, timestamp_path: ts}}
rules:
  - {{id: fire, kind: fire_panel, category: fire_alarm, priority: P0,
     when: {{point: temp, gt: 100}}, message: {{zh: "{{device}}火警", en: "{{device}} fire"}}}}
  - {{id: marker, kind: meter, category: comfort, priority: P3, work_order: false,
     when: {{point: temp, gt: {MARKER_BASE - 1}}},
     message: {{zh: "{{device}}标记", en: "{{device}} marker"}}}}
"""


@dataclass
class Platform:
    """The platform's view (a paho subscriber on the upstream broker): when the gateway said
    online, and when each probe's alarm message and work order arrived (wall clock)."""

    online_at: float | None = None
    canary_alarm: dict[int, float] = field(default_factory=dict)
    canary_order: dict[int, float] = field(default_factory=dict)
    marker_alarm: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        now = time.time()
        # Not a message the suite times: ignored (an exception would stop paho's loop).
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            self._note(message.topic, json.loads(message.payload), now)

    def _note(self, topic: str, body: dict[str, Any], now: float) -> None:
        with self.lock:
            if topic.endswith("/gateway/status"):
                if body.get("state") == "online" and self.online_at is None:
                    self.online_at = now
            elif topic.endswith("/alarms") and body.get("state") == "active":
                if body.get("rule_id") == "fire":
                    self.canary_alarm.setdefault(_canary(body), now)
                elif body.get("rule_id") == "marker":
                    k = round(body["evidence"]["temp"]) - MARKER_BASE
                    self.marker_alarm.setdefault(k, now)
            elif topic.endswith("/work-orders") and body.get("event") == "raised":
                self.canary_order.setdefault(_canary(body), now)

    def snapshot(self) -> Platform:
        with self.lock:
            return Platform(self.online_at, dict(self.canary_alarm), dict(self.canary_order),
                            dict(self.marker_alarm))


def _canary(body: dict[str, Any]) -> int:
    return int(str(body["location"]["device"]).removeprefix("panel-"))


@contextlib.contextmanager
def platform_subscriber(port: int) -> Iterator[Platform]:
    platform = Platform()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-platform")
    client.on_message = platform.on_message
    client.connect("127.0.0.1", port)
    client.subscribe("pm/bench/#", qos=1)
    client.loop_start()
    try:
        yield platform
    finally:
        client.disconnect()
        client.loop_stop()


def broker_dropped(port: int) -> int:
    """Messages the broker dropped (its retained ``$SYS`` counter; -1 when it gave none)."""
    got: list[int] = []
    seen = threading.Event()

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        got.append(int(message.payload))
        seen.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sys")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("$SYS/broker/publish/messages/dropped")
    client.loop_start()
    try:
        seen.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else -1


@contextlib.contextmanager
def brokers(work: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """The device broker (as shipped for a gateway) and the platform broker, fresh."""
    (work / "dev").mkdir(parents=True, exist_ok=True)
    (work / "up").mkdir(parents=True, exist_ok=True)
    dev = Mosquitto(work / "dev", extra_conf=DEVICE_BROKER_CONF)
    up = Mosquitto(work / "up")
    with dev.running(), up.running():
        yield dev, up


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    started: float
    metrics_port: int | None
    log: Path


def compile_sources(tree: Path = REPO) -> None:
    """Write the byte-code cache of ``tree``'s packages, as ``pip install`` does for an
    installed gateway: compiling the sources is not part of a start. (A shell that sets
    ``PYTHONDONTWRITEBYTECODE``, as many test setups do, would otherwise have every start
    compile the gateway again: about 0.15 s more to ``online`` and 1 MB more RSS.)"""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    *(str(tree / p) for p in ("gateway", "drivers"))], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


@contextlib.contextmanager
def gateway(work: Path, dev: int, up: int, devices: int, *, metrics: bool) -> Iterator[Gateway]:
    """``propgw run`` on a fresh state folder; its stderr goes to ``work/gateway.log``.
    Run :func:`compile_sources` first: the gateway reads the byte-code cache, as installed."""
    port = free_port() if metrics else None
    config = work / "site.yaml"
    config.write_text(site_yaml(work / "state", dev, up, devices, port), encoding="utf-8")
    with open(work / "gateway.log", "ab") as log:
        started = time.time()
        proc = subprocess.Popen([PROPGW, "run", "-c", str(config)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield Gateway(proc, started, port, work / "gateway.log")
    finally:
        stop(proc, 20)


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               log: Path | None = None) -> None:
    """Poll ``check``; on timeout, say what was awaited and show the end of ``log``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = ""
            if log is not None and log.exists():
                tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{tail}")
        time.sleep(0.02)


_SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')


def metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The gateway's Prometheus samples: (name, labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(tuple(kv.split("=", 1)) for kv in
                               re.findall(r'\w+="[^"]*"', match[2] or ""))
            samples[match[1], frozenset((k, v.strip('"')) for k, v in labels)] = \
                float(match[3])
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """Sum of ``name`` over the samples that carry ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@dataclass
class Load:
    """What the publishers did: messages, achieved rate, and the send time of every probe."""

    published: int
    acked: int
    rate: float
    canaries: dict[int, float]
    markers: dict[int, float]


@contextlib.contextmanager
def publishers(port: int, rate: float, seconds: float, *, processes: int, devices: int,
               canary_rate: float, marker_rate: float) -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``processes`` load generators sharing ``rate`` and the devices; the first one
    sends the probes. Collect with ``collect``."""
    procs: list[subprocess.Popen[str]] = []
    processes = max(1, min(processes, devices))
    try:
        for i in range(processes):
            lo, hi = i * devices // processes, (i + 1) * devices // processes - 1
            procs.append(subprocess.Popen(
                [sys.executable, str(REPO / "bench/loadgen.py"), "--port", str(port),
                 "--rate", str(rate / processes), "--seconds", str(seconds),
                 "--devices", f"{lo}-{hi}", "--client-id", f"bench-load-{i}",
                 "--canary-rate", str(canary_rate if i == 0 else 0),
                 "--marker-rate", str(marker_rate if i == 0 else 0)],
                cwd=REPO, stdout=subprocess.PIPE, text=True))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def collect(procs: list[subprocess.Popen[str]], timeout: float) -> Load:
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed ({proc.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    start = min(r["start"] for r in reports)
    stop = max(r["stop"] for r in reports)
    published = sum(r["published"] for r in reports)
    return Load(published=published, acked=sum(r["acked"] for r in reports),
                rate=published / max(stop - start, 1e-9),
                canaries={int(k): v / 1e6 for r in reports for k, v in r["canaries"].items()},
                markers={int(k): v / 1e6 for r in reports for k, v in r["markers"].items()})
