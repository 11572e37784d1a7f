"""The fire panel simulator against a real mosquitto, read by the gateway's own MQTT driver.

Nothing is mocked: the simulator publishes, mosquitto routes, ``drivers.mqtt.MqttDriver``
decodes with the shipped profiles (``fire-panel-mqtt``, ``fire-panel-zone-mqtt``). Every wait
is for a condition with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt import MqttDriver, build_mqtt_drivers
from gateway.clock import SystemClock
from gateway.config import GatewayConfig, MqttDevice, MqttPoint
from gateway.model import Quality
from simulators.base import ActionError, Simulator
from simulators.fire_panel import CONTROLLER_BITS, OPERATION_BITS, FirePanelSim
from tests.mqtt_sim_support import WAIT, Sink, driver_and_sim, sim_site, wait_until
from tests.support import Mosquitto

STALE = 1.0  # the devices' stale_after in these tests
PANEL = "FACP-1"
ZONES = 4


# --------------------------------------------------------------------------- harness


def site(port: int) -> GatewayConfig:
    """The site config an engineer writes for a panel: two lines per device kind."""
    return sim_site(port, [
        {"id": "{panel}", "driver": "mqtt", "profile": "fire-panel-mqtt", "stale_after": STALE},
        {"id": "{panel}-zone-{zone}", "driver": "mqtt", "profile": "fire-panel-zone-mqtt",
         "stale_after": STALE},
    ])


@dataclass
class Rig:
    sim: FirePanelSim
    driver: MqttDriver
    sink: Sink
    config: GatewayConfig

    @property
    def controller(self) -> MqttDevice:
        return _mqtt(self.config.devices[0])

    @property
    def zone(self) -> MqttDevice:
        return _mqtt(self.config.devices[1])

    def mismatches(self) -> list[str]:
        """Every profile point whose latest reading differs from the simulator's state."""
        snap = self.sim.snapshot()
        wrong: list[str] = []
        for point in self.controller.points:
            section = {"controller": snap["controller"], "event": snap["last_event"],
                       "availability": {"": "online" if self.sim.connected else "offline"}}[
                point.topic.rsplit("/", 1)[1]]
            if section is None:  # no event yet
                continue
            latest = self.sink.latest(PANEL, point.name)
            if section is snap["last_event"] and latest is not None \
                    and latest.quality is Quality.COMM_LOSS:
                continue  # event points stay comm-loss after an outage until the next event
            wrong += _compare(self.sink, PANEL, point, section)
        for number, body in snap["zones"].items():
            for point in self.zone.points:
                wrong += _compare(self.sink, f"{PANEL}-zone-{number}", point, body)
        return wrong

    async def consistent(self) -> None:
        await self.sink.until(lambda: not self.mismatches(), lambda: f"decoded values to "
                              f"match the simulator: {self.mismatches()}")


def _mqtt(device: Any) -> MqttDevice:
    assert isinstance(device, MqttDevice)
    return device


def _compare(sink: Sink, device: str, point: MqttPoint, body: Mapping[str, Any]) -> list[str]:
    expected = body[point.path or ""]
    if point.map:
        expected = point.map.get(str(expected), expected)
    reading = sink.latest(device, point.name)
    if reading is None or not reading.good or reading.value != expected \
            or type(reading.value) is not type(expected):
        return [f"{device}.{point.name}: {reading.value if reading else None!r} "
                f"({reading.quality if reading else 'no reading'}), simulator {expected!r}"]
    return []


@contextlib.asynccontextmanager
async def rig(mosquitto: Mosquitto, **options: Any) -> AsyncIterator[Rig]:
    """Driver and simulator running against ``mosquitto`` until the block ends."""
    config = site(mosquitto.port)
    [driver] = build_mqtt_drivers(config, SystemClock())
    sim_options: dict[str, Any] = {"zones": ZONES, "detectors_per_zone": 3, "seed": 7,
                                   "heartbeat": 0.3, "linkage": False, "reset_hold": 0.3,
                                   "reconnect_initial": 0.05, "reconnect_max": 0.2,
                                   "connect_timeout": 2.0, **options}
    sim = FirePanelSim(PANEL, host="127.0.0.1", port=mosquitto.port, **sim_options)
    async with driver_and_sim(driver, sim) as sink:
        the_rig = Rig(sim, driver, sink, config)
        await the_rig.consistent()
        yield the_rig


def bits(word: int) -> dict[str, bool]:
    return {name: bool(word >> bit & 1) for name, bit in CONTROLLER_BITS.items()}


# --------------------------------------------------------------------------- decoding


@pytest.mark.mosquitto
async def test_every_profile_point_decodes_to_the_simulator_state(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        # Idle panel: normal operation (bit 0 set), nothing else.
        assert (await r.sink.value(PANEL, "status_word", 1)).source_ts is not None
        assert {r.sink.latest(f"{PANEL}-zone-{n}", "state").value  # type: ignore[union-attr]
                for n in range(1, ZONES + 1)} == {"normal"}

        r.sim.apply("fire", {"zone": 3, "detector": 2})
        await r.consistent()
        assert r.sink.latest(f"{PANEL}-zone-3", "fire").value is True  # type: ignore[union-attr]
        assert r.sink.latest(f"{PANEL}-zone-3", "alarm_detector").value == 2  # type: ignore[union-attr]
        word = r.sink.latest(PANEL, "status_word").value  # type: ignore[union-attr]
        assert isinstance(word, int)
        assert word & (1 << 1), "fire in zone 3 sets controller status bit 1"
        assert r.sink.latest(PANEL, "fire_zone").value == 3  # type: ignore[union-attr]
        assert r.sink.latest(PANEL, "event").value == "fire"  # type: ignore[union-attr]
        assert r.sink.latest(PANEL, "event_zone").value == 3  # type: ignore[union-attr]

        steps: list[tuple[str, dict[str, Any]]] = [
            ("prealarm", {"zone": 1, "detector": 1}), ("supervisory", {"zone": 1, "detector": 3}),
            ("fault", {"zone": 2, "detector": 1}), ("disable", {"zone": 4, "detector": 2}),
            ("power_fault", {"zone": 2}), ("main_power_fault", {}), ("backup_power_fault", {}),
            ("bus_fault", {}), ("mode", {"mode": "manual"}), ("start", {"zone": 3}),
            ("feedback", {"zone": 3}), ("delay", {"zone": 1, "seconds": 60}),
            ("config_change", {}), ("test_mode", {})]
        for action, params in steps:
            r.sim.apply(action, params)
        await r.consistent()

        word = r.sink.latest(PANEL, "status_word").value  # type: ignore[union-attr]
        assert isinstance(word, int)
        decoded = {name: r.sink.latest(PANEL, name).value  # type: ignore[union-attr]
                   for name in CONTROLLER_BITS}
        assert decoded == bits(word)
        assert decoded == {**dict.fromkeys(CONTROLLER_BITS, True), "running_normal": False,
                           "reset": False}
        zone1 = {p: r.sink.latest(f"{PANEL}-zone-1", p).value  # type: ignore[union-attr]
                 for p in ("state", "prealarm", "supervisory", "delay", "status")}
        assert zone1 == {"state": "prealarm", "prealarm": True, "supervisory": True,
                         "delay": True, "status": (1 << 4) | (1 << 7)}  # test mode: bit 0 clear
        assert r.sink.latest(f"{PANEL}-zone-4", "state").value == "disabled"  # type: ignore[union-attr]
        assert r.driver.health().counters["malformed"] == 0


@pytest.mark.mosquitto
async def test_reset_and_silence_are_operator_events(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("fire", {"zone": 1})
        r.sim.apply("fault", {"zone": 2, "detector": 3})
        await r.sink.value(PANEL, "fire", True)

        r.sim.apply("silence", {})
        event = await r.sink.next(PANEL, "event", lambda x: x.value == "silence")
        operation = r.sink.latest(PANEL, "operation")
        assert operation is not None
        assert operation.value == 1 << OPERATION_BITS["silence"] == 2
        assert event.source_ts is not None
        await r.sink.value(PANEL, "silenced", True)
        assert r.sink.latest(PANEL, "fire").value is True  # type: ignore[union-attr]

        r.sim.apply("reset", {})
        await r.sink.next(PANEL, "event", lambda x: x.value == "reset")
        await r.sink.value(PANEL, "operation", 1)
        await r.sink.value(PANEL, "reset", True)  # bit 13 while resetting...
        await r.sink.value(PANEL, "fire", False)
        await r.sink.value(PANEL, "reset", False)  # ...for reset_hold
        # A reset does not repair a fault; silence ends with it.
        assert r.sink.latest(PANEL, "fault").value is True  # type: ignore[union-attr]
        assert r.sink.latest(PANEL, "silenced").value is False  # type: ignore[union-attr]
        await r.consistent()


@pytest.mark.mosquitto
async def test_automatic_linkage_runs_delay_start_feedback(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto, linkage=True, linkage_delay=0.4, feedback_after=0.4) as r:
        r.sim.apply("fire", {"zone": 2, "detector": 1})
        zone = f"{PANEL}-zone-2"
        await r.sink.value(zone, "delay", True)
        await r.sink.value(zone, "start", True)
        await r.sink.value(zone, "feedback", True)
        assert r.sink.latest(zone, "delay").value is False  # type: ignore[union-attr]
        events = [x.value for x in r.sink.readings
                  if x.device == PANEL and x.point == "event" and x.good]
        assert events[-4:] == ["fire", "delay", "start", "feedback"]
        await r.sink.value(PANEL, "feedback", True)
        word = r.sink.latest(PANEL, "status_word")
        assert word is not None
        assert isinstance(word.value, int)
        assert bits(word.value)["start"]

        # Manual mode: fire alone starts nothing.
        r.sim.apply("mode", {"mode": "manual"})
        r.sim.apply("fire", {"zone": 4})
        await r.sink.value(f"{PANEL}-zone-4", "fire", True)
        await r.consistent()
        assert r.sink.latest(f"{PANEL}-zone-4", "delay").value is False  # type: ignore[union-attr]


# --------------------------------------------------------------------------- faults


@pytest.mark.mosquitto
async def test_malformed_payloads_become_bad_readings(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        controller_points = [p.name for p in r.controller.points
                             if p.topic.endswith("/controller")]

        r.sim.apply("malformed", {"kind": "bad_json"})
        bad = await r.sink.next(PANEL, "status_word", lambda x: x.quality is Quality.BAD)
        assert bad.error is not None
        assert bad.error.startswith("payload is not JSON")
        # Every point on that topic is bad, and the driver counted each.
        await r.sink.until(lambda: all(
            r.sink.latest(PANEL, p).quality is Quality.BAD  # type: ignore[union-attr]
            for p in controller_points) or False, "all controller points bad")
        assert r.driver.health().counters["malformed"] >= len(controller_points)
        await r.sink.value(PANEL, "status_word", 1)  # the next heartbeat is fine again

        before = r.driver.health().counters["malformed"]
        r.sim.apply("malformed", {"kind": "wrong_type"})
        bad = await r.sink.next(PANEL, "status_word", lambda x: x.quality is Quality.BAD)
        assert bad.error == "expected an integer, got '0x0001'"
        same_message = [x for x in r.sink.readings if x.received_ts == bad.received_ts
                        and x.device == PANEL]
        assert {x.point for x in same_message if not x.good} == {"status_word"}
        assert r.driver.health().counters["malformed"] == before + 1

        r.sim.apply("malformed", {"kind": "missing_field", "field": "fire"})
        bad = await r.sink.next(PANEL, "fire", lambda x: x.quality is Quality.BAD)
        assert bad.error == "field 'fire' is missing"

        r.sim.apply("malformed", {"kind": "wrong_type", "zone": 2})
        bad = await r.sink.next(f"{PANEL}-zone-2", "fire", lambda x: x.quality is Quality.BAD)
        assert bad.error is not None
        assert bad.error.startswith("expected true/false")
        await r.consistent()


@pytest.mark.mosquitto
async def test_silent_panel_turns_comm_loss_after_stale_after(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("silent", {})
        published = r.sim.counters["published"]
        lost = await r.sink.next(PANEL, "status_word",
                                 lambda x: x.quality is Quality.COMM_LOSS)
        assert lost.error == f"no message for {STALE:g} s"
        await r.sink.until(lambda: all(
            r.sink.latest(f"{PANEL}-zone-{n}", "state").quality  # type: ignore[union-attr]
            is Quality.COMM_LOSS for n in range(1, ZONES + 1)), "every zone comm-loss")
        assert r.driver.health().devices[PANEL] == "comm-loss"
        assert r.sim.counters["published"] == published  # not even a heartbeat
        assert r.sim.counters["suppressed"] > 0
        assert r.sim.connected  # silent is not offline: the link stays up

        r.sim.apply("clear_faults", {})
        await r.consistent()
        assert r.driver.health().devices[PANEL] == "ok"


@pytest.mark.mosquitto
async def test_disconnect_fires_the_will_goes_stale_and_recovers(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("fire", {"zone": 2})
        await r.sink.value(PANEL, "fire", True)
        r.sim.apply("disconnect", {"seconds": 1.5})
        offline = await r.sink.value(PANEL, "online", False)  # the broker published the will
        await wait_until(lambda: not r.sim.connected, "the simulator to notice")
        lost = await r.sink.next(PANEL, "fire", lambda x: x.quality is Quality.COMM_LOSS)
        assert lost.received_ts - offline.received_ts >= STALE * 0.9

        await r.sink.value(PANEL, "online", True)
        await r.consistent()
        assert r.sink.latest(PANEL, "fire").value is True  # type: ignore[union-attr]
        assert r.sim.counters["connects"] == 2


@pytest.mark.mosquitto
async def test_clock_skew_shifts_the_source_timestamps(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        ok = await r.sink.next(PANEL, "status_word")
        assert ok.source_ts is not None
        assert abs(ok.source_ts - ok.received_ts) < 1.0

        r.sim.apply("clock_skew", {"seconds": 3600})
        r.sim.apply("fire", {"zone": 1})
        skewed = await r.sink.value(PANEL, "fire", True)
        assert skewed.source_ts is not None
        assert skewed.source_ts - skewed.received_ts == pytest.approx(3600, abs=1.0)
        event = r.sink.latest(PANEL, "event")
        assert event is not None
        assert event.source_ts is not None
        assert event.source_ts - event.received_ts == pytest.approx(3600, abs=1.0)

        r.sim.apply("clock_skew", {"seconds": -120})
        behind = await r.sink.next(f"{PANEL}-zone-1", "fire",  # not one already in flight
                                   lambda x: (x.source_ts or 0) < x.received_ts)
        assert behind.source_ts is not None
        assert behind.source_ts - behind.received_ts == pytest.approx(-120, abs=1.0)


@pytest.mark.mosquitto
async def test_reconnects_after_a_broker_restart(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("fire", {"zone": 4, "detector": 3})
        await r.sink.value(f"{PANEL}-zone-4", "alarm_detector", 3)

        await asyncio.to_thread(mosquitto.stop)  # persistence off: retained values are lost
        await wait_until(lambda: r.sim.counters["connect_failures"] >= 2, "failed reconnects")
        assert not r.sim.connected
        await asyncio.to_thread(mosquitto.start)

        await wait_until(lambda: r.driver.health().counters["subscribed"] >= 2, "resubscribe")
        await wait_until(lambda: r.sim.connected, "simulator reconnect")
        await r.consistent()  # the simulator's full report after reconnecting
        assert r.sink.latest(f"{PANEL}-zone-4", "alarm_detector").value == 3  # type: ignore[union-attr]

    # Shut down gracefully, the panel said "offline" itself (a clean DISCONNECT has no will).
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(f"fire/{PANEL}/availability", qos=1)
        async with asyncio.timeout(WAIT):
            retained = await anext(aiter(late.messages))
    assert retained.payload == b"offline"


# --------------------------------------------------------------------------- command topic


@pytest.mark.mosquitto
async def test_command_topic_applies_actions_and_answers(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r, aiomqtt.Client("127.0.0.1", mosquitto.port) as engineer:
        await engineer.subscribe(r.sim.result_topic, qos=1)
        assert r.sim.cmd_topic == f"fire/{PANEL}/cmd"

        async def command(payload: str) -> dict[str, Any]:
            await engineer.publish(r.sim.cmd_topic, payload, qos=1)
            async with asyncio.timeout(WAIT):
                async for message in engineer.messages:
                    assert isinstance(message.payload, bytes)
                    reply: dict[str, Any] = json.loads(message.payload)
                    return reply
            raise AssertionError("no reply")

        reply = await command('{"action": "fire", "params": {"zone": 2, "detector": 1}, '
                              '"id": 42}')
        assert reply["ok"] is True
        assert reply["id"] == 42
        assert reply["result"] == f"{PANEL}: zone 2 detector 1: fire"
        await r.sink.value(f"{PANEL}-zone-2", "fire", True)

        reply = await command('{"action": "explode"}')
        assert reply["ok"] is False
        assert "no action 'explode'" in reply["error"]
        reply = await command('{"action": "fire", "params": {"zone": 99}}')
        assert reply == {"ok": False, "action": "fire", "error": "no zone 99; zones are 1..4",
                         "ts": reply["ts"]}
        reply = await command("fire zone 3")
        assert reply["ok"] is False
        assert "not JSON" in reply["error"]

        # The result of a disconnect command still goes out before the link drops.
        reply = await command('{"action": "disconnect", "params": {"seconds": 0.5}}')
        assert reply["ok"] is True
        await r.sink.value(PANEL, "online", False)
        await r.sink.value(PANEL, "online", True)
        assert r.sim.counters["commands"] == 5


# --------------------------------------------------------------------------- without a broker


def test_actions_are_listed_validated_and_seeded() -> None:
    def panel(seed: int) -> FirePanelSim:
        return FirePanelSim("P", host="127.0.0.1", port=1, zones=3, detectors_per_zone=8,
                            seed=seed, linkage=False)

    sim = panel(1)
    as_protocol: Simulator = sim  # what scenarios, the CLI and the control API rely on
    assert as_protocol.kind == "fire_panel"
    names = [a.name for a in sim.actions()]
    assert len(names) == len(set(names))
    for required in ("fire", "prealarm", "supervisory", "fault", "disable", "start",
                     "feedback", "delay", "main_power_fault", "backup_power_fault",
                     "bus_fault", "reset", "silence", "malformed", "disconnect", "clock_skew",
                     "silent", "clear_faults"):
        assert required in names
    params = {"zone": 1, "detector": 1, "mode": "manual", "seconds": 1, "kind": "bad_json"}
    for name in names:
        assert sim.apply(name, params).startswith("P: ")
    with pytest.raises(ActionError, match="no action 'explode'"):
        sim.apply("explode", {})
    with pytest.raises(ActionError, match="parameter 'zone' is required"):
        sim.apply("fire", {})
    with pytest.raises(ActionError, match="no detector 9 in zone 1"):
        sim.apply("fire", {"zone": 1, "detector": 9})
    with pytest.raises(ActionError, match="kind"):
        sim.apply("malformed", {"kind": "garbage"})
    with pytest.raises(ValueError, match="zones"):
        FirePanelSim("P", host="h", port=1, zones=0)

    # A disabled zone does not report; the same seed trips the same detectors.
    fresh = panel(1)
    fresh.apply("disable", {"zone": 2})
    assert "ignores it" in fresh.apply("fire", {"zone": 2})
    assert fresh.snapshot()["controller"]["fire"] is False
    picks = [[panel(seed).apply("fire", {"zone": z}) for z in (1, 2, 3)] for seed in (5, 5, 6)]
    assert picks[0] == picks[1]
    assert picks[0] != picks[2]
