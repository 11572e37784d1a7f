"""``propgw demo``: a small simulated site, the real gateway, and a watcher upstream.

Everything talks over real sockets on 127.0.0.1: the elevator simulators serve Modbus TCP, the
gateway polls them with its own drivers, and work orders travel over MQTT to the upstream broker,
where a separate client (standing in for the platform) prints what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiomqtt

from gateway.alarms import AlarmEvent, AlarmState
from gateway.app import Gateway, wait_for_signals
from gateway.broker import EmbeddedBroker
from gateway.bus import Overflow, Subscription
from gateway.config import GatewayConfig, load_config
from gateway.workorders import WorkOrder
from simulators.elevator import ElevatorSim
from simulators.modbus_server import SimModbusServer

__all__ = ["DemoOptions", "demo_config_path", "parse_mqtt_url", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    duration: float | None = None
    broker: tuple[str, int] | None = None
    upstream: tuple[str, int] | None = None
    #: Seconds into the demo at which E1 traps its passenger.
    trap_at: float = 4.0


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``host:port``) → (host, port); raises ValueError with a hint."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"expected mqtt://HOST:PORT, got {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return parts.hostname, port


def demo_config_path() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "config" / "demo.yaml",
                      here.parent / "_bundled_config" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("config/demo.yaml is missing from this installation")


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo until Ctrl-C / SIGTERM or ``options.duration``; returns an exit status."""
    say = _Printer(out)
    say.line("propgw demo: two elevators over Modbus TCP, the gateway, and an upstream platform "
             "watcher. Ctrl-C stops it.")
    async with contextlib.AsyncExitStack() as stack:
        if options.broker is None:
            broker = await stack.enter_async_context(EmbeddedBroker(port=_free_port()))
            broker_host, broker_port = broker.host, broker.port
            say.service("MQTT broker (embedded, devices)", broker.url)
        else:
            broker_host, broker_port = options.broker
            say.service("MQTT broker (devices)", f"mqtt://{broker_host}:{broker_port}")
        up_host, up_port = options.upstream or (broker_host, broker_port)
        say.service("Upstream platform broker", f"mqtt://{up_host}:{up_port}")

        sims = {name: ElevatorSim(name, seed=seed) for name, seed in (("E1", 1), ("E2", 2))}
        ports: dict[str, int] = {}
        for name, sim in sims.items():
            server = await stack.enter_async_context(
                SimModbusServer([sim.unit], port=_free_port()))
            ports[name] = server.port
            say.service(f"Elevator simulator {name}", f"modbus-tcp://127.0.0.1:{server.port} "
                                                      "(unit 1)")
        config = load_config(demo_config_path(), env={
            "PROPGW_DEMO_MQTT_HOST": broker_host, "PROPGW_DEMO_MQTT_PORT": str(broker_port),
            "PROPGW_DEMO_UPSTREAM_HOST": up_host, "PROPGW_DEMO_UPSTREAM_PORT": str(up_port),
            "PROPGW_DEMO_E1_PORT": str(ports["E1"]), "PROPGW_DEMO_E2_PORT": str(ports["E2"]),
        })
        base = f"{config.upstream.topic_prefix}/{config.site.id}" if config.upstream else ""
        say.line(f"Watch upstream yourself:  mosquitto_sub -h {up_host} -p {up_port} "
                 f"-t '{base}/#' -v")
        gateway = Gateway(config, observers=[say])
        feed = gateway.bus.subscribe("demo.status", maxsize=1000, overflow=Overflow.DROP_OLDEST)
        async with asyncio.TaskGroup() as tg:
            helpers = [
                tg.create_task(_status_lines(feed, say), name="demo.status"),
                *(tg.create_task(sim.run(), name=f"sim[{name}]") for name, sim in sims.items()),
                tg.create_task(_watch_upstream(config, up_host, up_port, say),
                               name="demo.upstream-watcher"),
                tg.create_task(_scenario(sims["E1"], options, say, gateway.started),
                               name="demo.scenario"),
            ]
            await gateway.run(shutdown_trigger=_trigger(options.duration))
            for task in helpers:
                task.cancel()
    say.line(f"demo finished: {say.alarms} alarm event(s), {say.orders} work order "
             f"message(s) raised, {say.upstream_orders} received upstream")
    return 0


async def _scenario(sim: ElevatorSim, options: DemoOptions, say: _Printer,
                    started: asyncio.Event) -> None:
    await started.wait()
    say.line("The gateway polls E1 and E2 every second; every 10 s it prints what it reads.")
    await asyncio.sleep(options.trap_at)
    sim.traffic = False
    sim.model.occupied = True
    sim.model.stop_between_floors()
    sim.refresh()
    floor = int(sim.model.position)
    say.event(f"E1 stopped between floors {floor} and {floor + 1} with its doors closed and a "
              "passenger inside (simulated controller trip).")
    say.event("The entrapment rule must see this hold for 30 s before it raises a P0 alarm "
              "(DOMAIN.md §1.4).")
    await asyncio.sleep(10)
    sim.model.press_alarm(True)
    sim.refresh()
    say.event("The passenger presses the in-car alarm button.")
    for remaining in (10, 0):
        await asyncio.sleep(10)
        if say.orders == 0 and remaining:
            say.event(f"...still counting; about {remaining + 1} s to confirmation.")
    await asyncio.sleep(30)
    sim.model.press_alarm(False)
    sim.model.recover()
    sim.traffic = True
    sim.refresh()
    say.event("A technician resets E1; the car levels at the nearest floor and opens its doors.")


async def _status_lines(feed: Subscription, say: _Printer) -> None:
    """Every 10 s, one line of what the gateway currently reads from each elevator."""
    latest: dict[str, dict[str, object]] = {}
    next_print = time.monotonic() + 3
    while True:
        try:
            async with asyncio.timeout(max(0.0, next_print - time.monotonic())):
                reading = await feed.get()
                latest.setdefault(reading.device, {})[reading.point] = (
                    reading.value if reading.good else reading.quality.value)
                continue
        except TimeoutError:
            pass
        next_print = time.monotonic() + 10
        parts = []
        for device, v in sorted(latest.items()):
            direction = v.get("car_direction") if v.get("car_status") == 1 else 0
            motion = {0: "stopped", 1: "going up", 2: "going down"}.get(
                direction if isinstance(direction, int) else -1, "?")
            doors = "doors closed" if v.get("door_status") == 1 else "doors open"
            inside = ", occupied" if v.get("passenger_status") == 1 else ""
            parts.append(f"{device} floor {v.get('car_position')} {motion}, {doors}{inside}")
        if parts:
            say.status(" | ".join(parts))


async def _watch_upstream(config: GatewayConfig, host: str, port: int, say: _Printer) -> None:
    """Stands in for the platform: subscribes upstream and prints what arrives."""
    if config.upstream is None:
        return
    base = f"{config.upstream.topic_prefix}/{config.site.id}"
    while True:
        try:
            async with aiomqtt.Client(host, port, identifier="propgw-demo-platform") as client:
                await client.subscribe(f"{base}/#", qos=1)
                async for message in client.messages:
                    say.upstream(str(message.topic), bytes(message.payload))
        except aiomqtt.MqttError as exc:
            log.debug("demo upstream watcher: %s; retrying", exc)
            await asyncio.sleep(1)


def _trigger(duration: float | None) -> Callable[[], Awaitable[None]]:
    async def trigger() -> None:
        if duration is None:
            await wait_for_signals()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await wait_for_signals()

    return trigger


class _Printer:
    """Prints what happens, with the time since the demo started."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.alarms = 0
        self.orders = 0
        self.upstream_orders = 0

    def _emit(self, tag: str, text: str) -> None:
        print(f"[+{time.monotonic() - self.t0:5.1f}s] {tag:<10} {text}", file=self.out,
              flush=True)

    def line(self, text: str) -> None:
        self._emit("", text)

    def status(self, text: str) -> None:
        self._emit("GATEWAY", f"reads: {text}")

    def service(self, what: str, url: str) -> None:
        self._emit("SERVICE", f"{what}: {url}")

    def event(self, text: str) -> None:
        self._emit("SCENARIO", text)

    def alarm(self, event: AlarmEvent) -> None:
        self.alarms += 1
        verb = "ALARM" if event.state is AlarmState.ACTIVE else "CLEARED"
        self._emit(verb, f"{event.priority} {event.category} on {event.device}: "
                         f"{event.message_zh}")
        self._emit("", f"{' ' * len(event.priority)} {event.message_en}")

    def work_order(self, order: WorkOrder) -> None:
        self.orders += 1
        respond_by = dt.datetime.fromisoformat(order.respond_by).astimezone()
        self._emit("WORK ORDER", f"{order.id} #{order.seq} {order.status} {order.priority} "
                                 f"{order.title.zh} / {order.title.en}; respond by "
                                 f"{respond_by:%H:%M:%S}")

    def upstream(self, topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = {}
        if data.get("type") == "work_order":
            self.upstream_orders += 1
            self._emit("UPSTREAM", f"platform received work order {data.get('id')} "
                                   f"#{data.get('seq')} ({data.get('status')}) on {topic}")
        elif data.get("type") == "alarm":
            self._emit("UPSTREAM", f"platform received alarm {data.get('alarm_id')} "
                                   f"{data.get('state')} on {topic}")
        elif topic.endswith("/gateway/status"):
            self._emit("UPSTREAM", f"gateway status: {data.get('state', payload.decode())}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
