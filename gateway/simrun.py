"""Runs a scenario end to end: simulators → real protocols → the gateway → alarms → verdict.

Used by ``propgw sim run`` and by the test suite. The gateway is configured from the scenario:
each simulated device becomes a device entry with the bundled profile of its kind, pointing at
the simulator's loopback endpoint; the scenario's ``gateway:`` section adds rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from gateway.alarms import AlarmEvent, AlarmState, site_zone
from gateway.app import Gateway
from gateway.broker import EmbeddedBroker
from gateway.clock import ScaledClock
from gateway.config import GatewayConfig, load_config_text
from simulators.platform import ORDER_WAIT, ScriptedPlatform
from simulators.scenario import Scenario
from simulators.site import Endpoint, SimSite, free_port

__all__ = ["ScenarioResult", "gateway_config", "run_scenario"]


@dataclass
class ScenarioResult:
    scenario: Scenario
    #: (scenario seconds since start, alarm event)
    alarms: list[tuple[float, AlarmEvent]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def gateway_config(scenario: Scenario, endpoints: dict[str, Endpoint], *,
                   broker: tuple[str, int] | None, poll_interval: float = 0.5,
                   upstream: tuple[str, int] | None = None,
                   state_dir: str | None = None) -> GatewayConfig:
    """The site config a field engineer would write for this simulated site."""
    return load_config_text(gateway_config_yaml(
        scenario, endpoints, broker=broker, poll_interval=poll_interval, upstream=upstream,
        state_dir=state_dir), source=f"scenario {scenario.name}")


def gateway_config_yaml(scenario: Scenario, endpoints: dict[str, Endpoint], *,
                        broker: tuple[str, int] | None, poll_interval: float = 0.5,
                        upstream: tuple[str, int] | None = None,
                        state_dir: str | None = None) -> str:
    """:func:`gateway_config` as YAML text (``propgw demo`` writes it out for people)."""
    devices: list[dict[str, Any]] = []
    mqtt_kinds: set[str] = set()
    for spec in scenario.devices:
        ep = endpoints.get(spec.id)
        if ep is None:
            continue
        if ep.protocol == "mqtt":
            mqtt_kinds.add(spec.kind)
            continue
        devices.append({"id": spec.id, "name": spec.name or spec.id,
                        "location": spec.location, "driver": "modbus-tcp", "host": ep.host,
                        "port": ep.port, "unit": ep.unit,
                        "profile": _modbus_profile(spec.kind, spec.options),
                        "poll_interval": poll_interval, "timeout": 0.5, "max_backoff": 5})
    # MQTT simulators are covered by one templated entry per profile, as a site would be.
    for kind in sorted(mqtt_kinds):
        devices.extend(_MQTT_ENTRIES[kind])
    brokers: dict[str, Any] = {"local": {"host": broker[0], "port": broker[1]}} if broker else {}
    data: dict[str, Any] = {
        "site": {"id": f"sim-{scenario.name}"[:64], "name": scenario.name, "gateway_id": "sim"},
        "brokers": brokers,
        "devices": devices,
        **scenario.gateway,
    }
    if upstream is not None:
        brokers["platform"] = {"host": upstream[0], "port": upstream[1]}
        data["upstream"] = {"broker": "platform", "topic_prefix": "propgw"}
        for dev in devices:
            if dev["driver"] == "mqtt":
                dev["broker"] = "local"
    if state_dir is not None:
        data["state_dir"] = state_dir
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


async def run_scenario(scenario: Scenario, *, speed: float = 10.0,
                       broker: tuple[str, int] | None = None,
                       on_line: Callable[[str], None] | None = None,
                       poll_interval: float = 0.5,
                       upstream: tuple[str, int] | None = None,
                       gateway_overrides: dict[str, Any] | None = None,
                       ) -> ScenarioResult:
    """Play ``scenario`` against a real gateway; returns the alarms and the verdict.

    Args:
        upstream: An MQTT broker the gateway publishes its upstream messages to (work orders,
            alarms, its status, and telemetry with the defaults unless the scenario has a
            ``telemetry:`` section), as it would to the platform's; the run ends only when
            the outbox has delivered everything (at most :data:`UPSTREAM_DRAIN` s more).
        gateway_overrides: Top-level config sections laid over the scenario's ``gateway:``
            (e.g. short ``work_orders`` windows).
    """
    say = on_line or (lambda text: None)
    clock = ScaledClock(speed, start_wall=_start_wall(scenario))
    result = ScenarioResult(scenario)
    extra = dict(gateway_overrides or {})
    if upstream is not None and "telemetry" not in {**scenario.gateway, **extra}:
        extra["telemetry"] = {}  # every message kind: readings too, with the defaults
    if extra:
        scenario = scenario.model_copy(update={"gateway": {**scenario.gateway, **extra}})
    async with contextlib.AsyncExitStack() as stack:
        if broker is None and any(d.kind in ("fire_panel", "access_control")
                                  for d in scenario.devices):
            embedded = await stack.enter_async_context(EmbeddedBroker(port=free_port()))
            broker = (embedded.host, embedded.port)
        # The outbox needs a folder; one the caller names (to read the files afterwards) wins.
        state = (stack.enter_context(tempfile.TemporaryDirectory(prefix="propgw-sim-"))
                 if upstream is not None and "state_dir" not in scenario.gateway else None)
        site = await stack.enter_async_context(SimSite(
            scenario, clock=clock, broker=broker,
            on_event=lambda t, text: say(f"[{t:6.1f}s] {text}")))
        config = gateway_config(scenario, site.endpoints, broker=broker,
                                poll_interval=poll_interval, upstream=upstream,
                                state_dir=state)
        if upstream is not None and config.upstream is not None:
            say(f"upstream: mqtt://{upstream[0]}:{upstream[1]}, topics "
                f"{config.upstream.topic_prefix}/{config.site.id}/# (watch with: mosquitto_sub "
                f"-h {upstream[0]} -p {upstream[1]} -t '{config.upstream.topic_prefix}/"
                f"{config.site.id}/#' -v)")
        observer = _Collector(result, site, clock, say, upstream=upstream is not None)
        gateway = Gateway(config, clock=clock, observers=[observer])
        done = asyncio.Event()

        async def finished() -> None:
            await done.wait()

        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(gateway.run(shutdown_trigger=finished),
                                     name="scenario.gateway")
            await gateway.started.wait()
            devices = tg.create_task(site.run(hold=True), name="scenario.devices")
            await asyncio.sleep(0)  # the site takes its t0 as it starts
            platform = None
            if upstream is not None and config.upstream is not None and scenario.platform:
                platform = tg.create_task(ScriptedPlatform(
                    scenario.platform, *upstream,
                    base=f"{config.upstream.topic_prefix}/{config.site.id}", clock=clock,
                    t0=site.t0, say=lambda t, text: say(f"[{t:6.1f}s] {text}")).run(),
                    name="scenario.platform")
            await clock.sleep_until(site.t0 + scenario.duration)
            if platform is not None:
                # Its last answers are due by now; their work orders' updates are drained next.
                await asyncio.wait([platform], timeout=ORDER_WAIT)
            if upstream is not None:
                await _drained(gateway, say)
            # The gateway stops before the devices: a device saying goodbye as it stops (a
            # panel's retained "offline") is the end of the rehearsal, not part of the story.
            done.set()
            await running
            devices.cancel()
            if platform is not None:
                platform.cancel()
    result.failures = _verdict(scenario, result.alarms)
    return result


#: Real seconds a run with an upstream waits at its end for the outbox to deliver the rest.
UPSTREAM_DRAIN = 10.0


async def _drained(gateway: Gateway, say: Callable[[str], None]) -> None:
    """Wait (bounded) until the outbox has delivered every message of the run."""
    outbox = gateway.outbox
    if outbox is None:
        return
    for _ in range(int(UPSTREAM_DRAIN / 0.05)):
        if not any(outbox.health().pending.values()):
            return
        await asyncio.sleep(0.05)
    say(f"upstream: {sum(outbox.health().pending.values())} message(s) not delivered within "
        f"{UPSTREAM_DRAIN:g} s; is the broker reachable?")


class _Collector:
    def __init__(self, result: ScenarioResult, site: SimSite, clock: ScaledClock,
                 say: Callable[[str], None], *, upstream: bool = False) -> None:
        self.result, self.site, self.clock, self.say = result, site, clock, say
        self.upstream = upstream

    def alarm(self, event: AlarmEvent) -> None:
        t = self.clock.monotonic() - self.site.t0
        self.result.alarms.append((t, event))
        verb = ("ALARM" if event.state is AlarmState.ACTIVE else "latched" if event.latched
                else "cleared")
        self.say(f"[{t:6.1f}s] {verb} {event.priority} {event.category} on {event.device}: "
                 f"{event.message_en}")

    def work_order(self, order: Any) -> None:
        if self.upstream:
            t = self.clock.monotonic() - self.site.t0
            self.say(f"[{t:6.1f}s] work order {order.id} seq {order.seq} {order.event} "
                     f"({order.status}) → upstream")


def _verdict(scenario: Scenario, alarms: list[tuple[float, AlarmEvent]]) -> list[str]:
    active = [(t, e) for t, e in alarms if e.state is AlarmState.ACTIVE]
    failures = []
    for want in scenario.expect.alarms:
        hits = [t for t, e in active if want.matches(category=e.category, device=e.device,
                                                     priority=e.priority, rule=e.rule_id)]
        if not hits:
            failures.append(f"expected alarm {want.model_dump(exclude_none=True)} did not fire")
        elif want.within is not None and min(hits) > want.within:
            failures.append(f"expected alarm {want.model_dump(exclude_none=True)} fired at "
                            f"{min(hits):.1f}s, later than {want.within:g}s")
    for unwanted in scenario.expect.no_alarms:
        wrong = [e for _, e in active if unwanted.matches(
            category=e.category, device=e.device, priority=e.priority, rule=e.rule_id)]
        if wrong:
            failures.append(f"unexpected alarm {wrong[0].alarm_id} ({wrong[0].category}) matched "
                            f"no_alarms {unwanted.model_dump(exclude_none=True)}")
    return failures


_MQTT_ENTRIES: dict[str, list[dict[str, Any]]] = {
    "fire_panel": [
        {"id": "{panel}", "name": "消防主机 {panel}", "driver": "mqtt",
         "profile": "fire-panel-mqtt", "stale_after": 90},
        {"id": "{panel}-zone-{zone}", "name": "{panel} 防区{zone}", "driver": "mqtt",
         "profile": "fire-panel-zone-mqtt", "stale_after": 90, "location": {"zone": "{zone}"}},
    ],
    "access_control": [
        {"id": "door-{door}", "name": "门禁 {door}", "driver": "mqtt",
         "profile": "access-door-mqtt", "stale_after": 90},
    ],
}


def _start_wall(scenario: Scenario) -> float | None:
    """Today at the scenario's ``start_at`` in the site's zone (the gateway's default)."""
    seconds = scenario.start_seconds
    if seconds is None:
        return None
    zone = site_zone(str(scenario.gateway.get("site", {}).get("timezone", "Asia/Shanghai")))
    midnight = dt.datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() + seconds


def _modbus_profile(kind: str, options: dict[str, Any]) -> str:
    if kind == "elevator":
        return "elevator-modbus"
    if kind == "energy_meter":
        return {"sdm630": "eastron-sdm630", "dtsu666": "chint-dtsu666"}[
            str(options.get("model", "sdm630"))]
    if kind == "water_meter":
        return "water-meter-modbus"
    raise ValueError(f"no bundled Modbus profile for kind {kind!r}")
