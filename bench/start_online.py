"""Start to upstream ``online``, import cost and idle RSS of ``propgw run`` for a typical MQTT site.

The site: ten MQTT devices (the issue 13 rig's ``{ts, temp, hum, seq}`` sensors) and an
entrapment rule on one elevator, the devices and the upstream on one local mosquitto, a state
folder (outbox, journal, work-order history); optionally the console on a loopback port.

* start → online: from just before ``propgw run`` is started to the retained ``online``
  gateway status arriving at a paho subscriber on the upstream broker (the subscriber is
  connected and has cleared the retained status first). ``--runs`` times; median, min, max.
  With it, the gateway's CPU time (utime + stime) when ``online`` arrives: wall time on a
  loaded machine mostly measures the load, CPU time what the start costs.
* idle RSS: VmRSS of one ``propgw run`` after ``--idle`` seconds, with and without the console.
* import: CPU seconds (``time.process_time``) of ``import gateway.app`` in a fresh interpreter,
  and the VmRSS right after it; ``--runs`` times.

    .venv/bin/python bench/start_online.py [--runs 7] [--idle 10] [--tree DIR]

``--tree`` measures another checkout (``git worktree add /tmp/before main``) with this
virtualenv, so that before and after can be measured alternately under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from procstats import cpu_seconds, free_port, process, rss_mb

REPO = Path(__file__).resolve().parents[1]
PROPGW = str(Path(sys.executable).parent / "propgw")

SITE = """
site: {{id: bench, name: bench, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}}}
  platform: {{host: 127.0.0.1, port: {port}, client_id: bench-gw-upstream}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
{devices}
  - {{id: E1, driver: mqtt, broker: devices, kind: elevator,
     points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}
rules:
  - {{id: trapped, kind: elevator, for: 30s, when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 困人, en: trapped}}}}
{console}
"""

#: Prints ``process_time`` of ``import gateway.app`` and the VmRSS (kB) after it.
_IMPORT = """
import time
t = time.process_time()
import gateway.app
used = time.process_time() - t
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(used, rss)
"""


def site(folder: Path, port: int, console_port: int | None) -> Path:
    devices = "\n".join(
        f"  - {{id: S{i}, driver: mqtt, broker: devices, kind: sensor, points: ["
        f"{{name: temp, topic: dev/S{i}, type: number, path: temp}}, "
        f"{{name: hum, topic: dev/S{i}, type: number, path: hum}}, "
        f"{{name: seq, topic: dev/S{i}, type: int, path: seq}}]}}" for i in range(10))
    console = f"console: {{port: {console_port}}}" if console_port is not None else ""
    path = folder / "site.yaml"
    path.write_text(SITE.format(state=folder / "state", port=port, devices=devices,
                                console=console), encoding="utf-8")
    return path


class StatusWatch:
    """A paho subscriber on the gateway status topic that notes when ``online`` arrives."""

    def __init__(self, port: int) -> None:
        self.online = threading.Event()
        self.at = 0.0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("pm/bench/gateway/status", qos=1)

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if b'"online"' in message.payload and not self.online.is_set():
            self.at = time.perf_counter()
            self.online.set()

    def clear(self) -> None:
        """Forget the retained status so that the next ``online`` is the next start's."""
        self.client.publish("pm/bench/gateway/status", b"", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.2)
        self.online.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def start_to_online(config: Path, watch: StatusWatch, *, hold: float
                          ) -> tuple[float, float, float]:
    """Seconds from start to ``online``, CPU seconds the gateway used by then; and its VmRSS
    in MB ``hold`` seconds later."""
    watch.clear()
    start = time.perf_counter()
    with process(PROPGW, "run", "-c", str(config), cwd=REPO) as gw:
        if not await asyncio.to_thread(watch.online.wait, 30):
            raise TimeoutError("the gateway did not say online within 30 s")
        cpu = cpu_seconds(gw.pid)
        elapsed = watch.at - start
        rss = float("nan")
        if hold:
            await asyncio.sleep(hold)
            rss = rss_mb(gw.pid)
    return elapsed, cpu, rss


async def measure(runs: int, idle: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"online": [], "online_cpu": [], "rss": [],
                                   "rss_console": []}
    port = free_port()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp, process(mosquitto, "-p", str(port), cwd=REPO):
        await asyncio.sleep(0.5)
        watch = StatusWatch(port)
        try:
            (Path(tmp) / "plain").mkdir()
            (Path(tmp) / "console").mkdir()
            plain = site(Path(tmp) / "plain", port, None)
            with_console = site(Path(tmp) / "console", port, free_port())
            for i in range(runs):
                elapsed, cpu, _ = await start_to_online(plain, watch, hold=0)
                out["online"].append(elapsed)
                out["online_cpu"].append(cpu)
                print(f"measured: start to online {i + 1}/{runs}", file=sys.stderr)
            out["rss"].append((await start_to_online(plain, watch, hold=idle))[2])
            out["rss_console"].append((await start_to_online(with_console, watch, hold=idle))[2])
        finally:
            watch.close()
    return out


def import_cost(runs: int) -> tuple[list[float], list[float]]:
    cpu, rss = [], []
    for _ in range(runs):
        line = subprocess.run([sys.executable, "-c", _IMPORT], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.split()
        cpu.append(float(line[0]))
        rss.append(int(line[1]) / 1024)
    return cpu, rss


def main() -> None:
    global REPO  # noqa: PLW0603 - a command-line choice made once, before anything runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=float, default=10.0, metavar="S")
    parser.add_argument("--tree", type=Path, default=REPO, metavar="DIR")
    args = parser.parse_args()
    REPO = args.tree.resolve()
    os.environ["PYTHONPATH"] = str(REPO)
    # As installed (pip writes .pyc files): compiling the sources is not part of a start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    cpu, import_rss = import_cost(args.runs)
    got = asyncio.run(measure(args.runs, args.idle))
    load = os.getloadavg()[0]
    print(f"\n{REPO}: {args.runs} runs; load average {load:.1f} on {os.cpu_count()} CPUs\n")
    print("| measurement | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for label, values, fmt in [
            ("import gateway.app, CPU s", cpu, "{:.3f}"),
            ("VmRSS after import gateway.app, MB", import_rss, "{:.1f}"),
            ("start → upstream online, s", got["online"], "{:.3f}"),
            ("gateway CPU by online, s", got["online_cpu"], "{:.2f}"),
            (f"VmRSS idle ({args.idle:g} s), no console, MB", got["rss"], "{:.1f}"),
            (f"VmRSS idle ({args.idle:g} s), console on, MB", got["rss_console"], "{:.1f}")]:
        print(f"| {label} | {fmt.format(statistics.median(values))} | "
              f"{fmt.format(min(values))} | {fmt.format(max(values))} |")


if __name__ == "__main__":
    main()
