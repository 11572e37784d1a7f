"""CPU of the whole gateway at 1,000 readings/s: telemetry upstream and InfluxDB on, next to off.

A real ``propgw run`` process reads ``--devices`` MQTT meters (10 points each, one JSON message
per meter per tick) from a real mosquitto on loopback; a publisher in this process sends
``--rate`` readings per second for ``--seconds``. Run twice with the same load:

* **off**: upstream to the platform broker (work orders and alarms only), no telemetry, no
  InfluxDB;
* **on**: the same plus ``telemetry: {}`` (the shipped defaults: 0.5 % deadband, 10 s minimum
  interval, 15 min heartbeat) upstream over MQTT, and ``influxdb:`` writing every reading to a
  real ``influxd`` 1.6.7 through the test suite's ``/api/v2/write`` shim.

The cost is the gateway process's CPU time (utime + stime from ``/proc/PID/stat``) over the
measured window, after a warm-up; also counted: telemetry messages a platform subscriber got,
and points InfluxDB stored.

    .venv/bin/python bench/telemetry_cost.py [--rate 1000] [--seconds 30] [--devices 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procstats import cpu_seconds  # noqa: E402

from tests.influx_support import InfluxD, V2Shim  # noqa: E402
from tests.support import Mosquitto  # noqa: E402

POINTS = ("voltage", "current", "power", "power_factor", "frequency", "energy",
          "reactive_power", "apparent_power", "temperature", "demand")
_TICK = 0.1  # seconds between publishing rounds


def site(port: int, on: bool, influx_url: str, state: Path) -> str:
    points = "\n".join(f"      - {{name: {p}, topic: 'bench/{{meter}}/data', path: {p}, "
                       f"type: number}}" for p in POINTS)
    extra = f"""
telemetry:
  overrides:
    - {{points: [energy], deadband_percent: 0}}
influxdb: {{url: "{influx_url}", bucket: bench, precision: ms}}
""" if on else ""
    return f"""
site: {{id: bench, name: bench, gateway_id: gw}}
state_dir: {state}
log_level: WARNING
brokers:
  devices: {{host: 127.0.0.1, port: {port}}}
  platform: {{host: 127.0.0.1, port: {port}, client_id: bench-gw-up}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
  - id: "m-{{meter}}"
    name: "meter {{meter}}"
    driver: mqtt
    broker: devices
    kind: energy_meter
    location: {{building: "1"}}
    points:
{points}
{extra}"""


async def publish(port: int, devices: int, rate: int, seconds: float) -> None:
    """``rate`` readings/s: each tick, enough meters send one message of 10 points."""
    per_tick = max(1, round(rate * _TICK / len(POINTS)))
    values = {m: {p: 100.0 + random.random() for p in POINTS} for m in range(devices)}
    meter = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-meters") as client:
        start = time.monotonic()
        for tick in range(int(seconds / _TICK)):
            for _ in range(per_tick):
                v = values[meter]
                for p in POINTS:  # noise around a slow drift; energy only grows
                    v[p] = v[p] + 0.5 if p == "energy" else v[p] * (1 + random.gauss(0, 0.003))
                await client.publish(f"bench/{meter}/data", json.dumps(v))
                meter = (meter + 1) % devices
            await asyncio.sleep(max(0.0, start + (tick + 1) * _TICK - time.monotonic()))


async def count_telemetry(port: int, stop: asyncio.Event, seen: list[int]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-platform") as client:
        await client.subscribe("pm/bench/telemetry/#", qos=1)
        async for _ in client.messages:
            seen[0] += 1
            if stop.is_set():
                return


async def measure(args: argparse.Namespace, on: bool, broker: Mosquitto, influx_url: str,
                  tmp: Path) -> dict[str, float]:
    state = tmp / ("on" if on else "off")
    state.mkdir()
    config = tmp / f"site-{'on' if on else 'off'}.yaml"
    config.write_text(site(broker.port, on, influx_url, state), encoding="utf-8")
    gateway = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "propgw"), "run", "-c", str(config), cwd=REPO)
    seen = [0]
    stop = asyncio.Event()
    counter = asyncio.create_task(count_telemetry(broker.port, stop, seen))
    try:
        await asyncio.sleep(3.0)  # start-up and imports: not measured
        await publish(broker.port, args.devices, args.rate, args.warmup)
        before, seen[0] = cpu_seconds(gateway.pid), 0
        t0 = time.monotonic()
        await publish(broker.port, args.devices, args.rate, args.seconds)
        used = cpu_seconds(gateway.pid) - before
        window = time.monotonic() - t0
        messages = seen[0]
    finally:
        stop.set()
        counter.cancel()
        await asyncio.gather(counter, return_exceptions=True)
        gateway.terminate()
        async with asyncio.timeout(30):
            await gateway.wait()
    return {"cpu": used, "window": window, "telemetry_messages": messages}


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        influxd = InfluxD(tmp / "influxd")
        influxd.start()
        influxd.create_db("bench")
        shim = V2Shim(influxd.url)
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(tmp / "mosquitto")
        try:
            await shim.start()
            broker.start()
            off = await measure(args, False, broker, shim.url, tmp)
            on = await measure(args, True, broker, shim.url, tmp)
            stored = influxd.query("SELECT count(value) FROM reading", db="bench")
        finally:
            broker.stop()
            await shim.stop()
            influxd.stop()
    readings = args.rate * args.seconds
    print(f"{args.rate} readings/s ({args.devices} MQTT meters x {len(POINTS)} points) for "
          f"{args.seconds:g} s after {args.warmup:g} s warm-up; gateway process CPU:")
    for label, run in (("telemetry + InfluxDB off", off), ("telemetry + InfluxDB on", on)):
        share = 100 * run["cpu"] / run["window"]
        print(f"  {label:26s} {run['cpu']:6.2f} s CPU = {share:5.1f} % of one core, "
              f"{1e6 * run['cpu'] / readings:5.1f} us per reading; "
              f"{run['telemetry_messages']:.0f} telemetry messages")
    print(f"  difference: {1e6 * (on['cpu'] - off['cpu']) / readings:5.1f} us per reading; "
          f"InfluxDB stored {stored}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--devices", type=int, default=100)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
