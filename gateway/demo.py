"""``propgw demo``: a small simulated site, the real gateway, and a watcher upstream.

Everything talks over real sockets on 127.0.0.1: the simulators serve Modbus TCP and publish
MQTT, the gateway reads them with its own drivers and the bundled detector packs, and work
orders travel over MQTT to the upstream broker, where a separate client (standing in for the
platform) prints what it receives. The site and its timeline are the library scenario
``demo-site``; the gateway config the demo generates is written out for people to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiomqtt

from gateway.alarms import AlarmEvent, AlarmState, Transition
from gateway.app import Gateway, wait_for_signals
from gateway.broker import EmbeddedBroker
from gateway.bus import Overflow, Subscription
from gateway.clock import SystemClock
from gateway.config import GatewayConfig, load_config
from gateway.console import UserStore, users_path
from gateway.i18n import format_location
from gateway.simrun import gateway_config_yaml
from gateway.workorders import WorkOrder
from simulators.platform import ScriptedPlatform
from simulators.scenario import Scenario, load_scenario
from simulators.site import SimSite, free_port

__all__ = ["DEMO_POLL_INTERVAL", "DEMO_SCENARIO", "DemoOptions", "parse_mqtt_url", "run_demo"]

#: The library scenario the demo plays (simulators/scenarios/demo-site.yaml); its expect:
#: section is checked in the test suite like every other scenario.
DEMO_SCENARIO = "demo-site"
#: Seconds between polls of the demo's Modbus devices.
DEMO_POLL_INTERVAL = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    duration: float | None = None
    broker: tuple[str, int] | None = None
    upstream: tuple[str, int] | None = None


def _demo_operator(config: GatewayConfig) -> str:
    """Create the demo's operator with a fresh random password (a real site has no default
    user: the first admin is created with `propgw users add`)."""
    path = users_path(config)
    assert path is not None, "the demo writes its state into a temporary folder"
    password = secrets.token_urlsafe(9)
    with UserStore(path) as store:
        store.add("demo", "operator", password)
    return password


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


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo until Ctrl-C / SIGTERM or ``options.duration``; returns an exit status."""
    say = _Printer(out)
    scenario = load_scenario(DEMO_SCENARIO)
    say.line("propgw demo: a simulated property (elevators, fire panel, doors, meters) over real "
             "Modbus TCP and MQTT on 127.0.0.1, the gateway, and a stand-in for the "
             "platform upstream. Ctrl-C stops it.")
    with tempfile.TemporaryDirectory(prefix="propgw-demo-") as state:
        async with contextlib.AsyncExitStack() as stack:
            if options.broker is None:
                broker = await stack.enter_async_context(EmbeddedBroker(port=free_port()))
                device_broker = (broker.host, broker.port)
                say.service("MQTT broker (embedded; devices and platform)", broker.url)
            else:
                device_broker = options.broker
                say.service("MQTT broker (devices)", _url(device_broker))
            upstream = options.upstream or device_broker
            if options.upstream is not None:
                say.service("Upstream platform broker", _url(upstream))
            site = await stack.enter_async_context(SimSite(
                scenario, clock=SystemClock(), broker=device_broker,
                on_event=lambda t, text: say.event(text)))
            for device, endpoint in site.endpoints.items():
                verb = "serves" if endpoint.protocol == "modbus-tcp" else "publishes to"
                say.service(f"{site.sims[device].kind} simulator {device}",
                            f"{verb} {endpoint.url}")
            text = gateway_config_yaml(scenario, site.endpoints, broker=device_broker,
                                       upstream=upstream, state_dir=state,
                                       poll_interval=DEMO_POLL_INTERVAL)
            console_port = free_port()
            text += f"console: {{port: {console_port}}}   # the operator console, on loopback\n"
            config_file = Path(state) / "site.yaml"
            config_file.write_text(text, encoding="utf-8")
            config = load_config(config_file)
            password = await asyncio.to_thread(_demo_operator, config)
            say.service("Operator console", f"http://127.0.0.1:{console_port}/  (log in as "
                                            f"'demo', password '{password}')")
            say.line(f"Gateway config (generated; what an engineer would write): {config_file}")
            base = f"{config.upstream.topic_prefix}/{config.site.id}" if config.upstream else ""
            say.line(f"Watch upstream yourself:  mosquitto_sub -h {upstream[0]} "
                     f"-p {upstream[1]} -t '{base}/#' -v")
            gateway = Gateway(config, observers=[say])
            feed = gateway.bus.subscribe("demo.status", maxsize=1000,
                                         overflow=Overflow.DROP_OLDEST)
            async with asyncio.TaskGroup() as tg:
                helpers = [
                    tg.create_task(_status_lines(feed, say), name="demo.status"),
                    tg.create_task(_watch_upstream(config, *upstream, say),
                                   name="demo.upstream-watcher"),
                    tg.create_task(_play(site, gateway.started, _platform(
                        scenario, config, upstream, say)), name="demo.scenario"),
                ]
                await gateway.run(shutdown_trigger=_trigger(options.duration))
                for task in helpers:
                    task.cancel()
    say.line(f"demo finished: {say.alarms} alarm event(s), {say.orders} work order "
             f"message(s) raised, {say.upstream_orders} received upstream")
    return 0


async def _play(site: SimSite, started: asyncio.Event,
                platform: Callable[[float], ScriptedPlatform] | None) -> None:
    """The scenario's devices, timeline and platform answers; the devices keep running."""
    await started.wait()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(site.run(hold=True), name="demo.devices")
        await asyncio.sleep(0)  # the site takes its t0 as it starts
        if platform is not None:
            tg.create_task(platform(site.t0).run(), name="demo.platform")


def _platform(scenario: Scenario, config: GatewayConfig, upstream: tuple[str, int],
              say: _Printer) -> Callable[[float], ScriptedPlatform] | None:
    """The stand-in platform's people: they answer the orders as the scenario scripts."""
    if config.upstream is None or not scenario.platform:
        return None
    base = f"{config.upstream.topic_prefix}/{config.site.id}"
    return lambda t0: ScriptedPlatform(scenario.platform, *upstream, base=base,
                                       clock=SystemClock(), t0=t0,
                                       say=lambda t, text: say.platform(text))


def _url(address: tuple[str, int]) -> str:
    return f"mqtt://{address[0]}:{address[1]}"


async def _status_lines(feed: Subscription, say: _Printer) -> None:
    """Every 10 s, one line of what the gateway currently reads from the site."""
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
        parts = [text for device, values in sorted(latest.items())
                 if (text := _summary(device, values))]
        if parts:
            say.status(" | ".join(parts))


def _summary(device: str, v: dict[str, object]) -> str | None:
    """A few words per device kind, from its points (None for devices not worth a line)."""
    if "car_position" in v:
        direction = v.get("car_direction") if v.get("car_status") == 1 else 0
        motion = {0: "stopped", 1: "up", 2: "down"}.get(
            direction if isinstance(direction, int) else -1, "?")
        doors = "doors closed" if v.get("door_status") == 1 else "doors open"
        inside = ", occupied" if v.get("passenger_status") == 1 else ""
        return f"{device} floor {v.get('car_position')} {motion}, {doors}{inside}"
    if "voltage_l1" in v:
        return f"{device} {_num(v.get('voltage_l1'))} V, {_num(v.get('power_total'))} W"
    if "flow_rate" in v:
        return f"{device} {_num(v.get('flow_rate'), 3)} m³/h"
    return None


def _num(value: object, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


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
        verb = ("ALARM" if event.state is AlarmState.ACTIVE else "LATCHED" if event.latched
                else f"RESET by {event.actor}" if event.transition is Transition.RESET
                else "CLEARED")
        self._emit(verb, f"{event.priority} {event.category} on {event.device}: "
                         f"{event.message_zh}")
        self._emit("", f"{' ' * len(event.priority)} {event.message_en}")

    def work_order(self, order: WorkOrder) -> None:
        self.orders += 1
        respond_by = dt.datetime.fromisoformat(order.respond_by).astimezone()
        where = order.location
        located = any((where.building, where.floor, where.zone, where.room))
        zh = f"（{format_location(where, 'zh-CN')}）" if located else ""
        en = f" ({format_location(where, 'en')})" if located else ""
        what = order.event if order.event == order.status else f"{order.event} ({order.status})"
        self._emit("WORK ORDER", f"{order.id} #{order.seq} {what} {order.priority} "
                                 f"{order.title.zh}{zh} / {order.title.en}{en}; respond by "
                                 f"{respond_by:%H:%M:%S}")

    def platform(self, text: str) -> None:
        self._emit("PLATFORM", text.removeprefix("platform: "))

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
