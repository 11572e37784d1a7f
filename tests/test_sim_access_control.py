"""The access control simulator against a real mosquitto, read by the gateway's MQTT driver.

Nothing is mocked: doors are decoded with the shipped ``access-door-mqtt`` profile; the
controller's heartbeat with the device entry its docstring suggests. Every wait is for a
condition with a bounded timeout.
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
from simulators.access_control import EVENT_CODES, AccessControlSim
from simulators.base import ActionError, Simulator
from tests.mqtt_sim_support import WAIT, Sink, driver_and_sim, sim_site
from tests.support import Mosquitto

STALE = 1.0
CTRL = "AC1"
DOORS = {"AC1-D1": 1, "AC1-D2": 1, "AC1-D3": 2}
HELD_AFTER = 0.5


def door(name: str) -> str:
    """The gateway's device id for a door."""
    return f"door-{name}"


def site(port: int) -> GatewayConfig:
    return sim_site(port, [
        {"id": "door-{door}", "driver": "mqtt", "profile": "access-door-mqtt",
         "stale_after": STALE},
        # The controller's heartbeat, as the simulator's docstring suggests.
        {"id": "acs-{ctrl}", "driver": "mqtt", "kind": "access_controller",
         "stale_after": STALE, "points": [
             {"name": "heartbeat_seq", "topic": "acs/controller/{ctrl}/heartbeat",
              "path": "seq", "type": "int", "timestamp_path": "ts"},
             {"name": "ac_power", "topic": "acs/controller/{ctrl}/heartbeat",
              "path": "ac_power", "type": "bool", "timestamp_path": "ts"},
             {"name": "online", "topic": "acs/controller/{ctrl}/availability",
              "type": "bool", "map": {"online": True, "offline": False}},
         ]},
    ])


@dataclass
class Rig:
    sim: AccessControlSim
    driver: MqttDriver
    sink: Sink
    config: GatewayConfig

    @property
    def door_points(self) -> list[MqttPoint]:
        device = self.config.devices[0]
        assert isinstance(device, MqttDevice)
        return device.points

    def mismatches(self) -> list[str]:
        """Every door point whose latest reading differs from the simulator's state."""
        snap = self.sim.snapshot()
        wrong: list[str] = []
        for name, body in snap["doors"].items():
            for point in self.door_points:
                latest = self.sink.latest(door(name), point.name)
                if point.topic.endswith("/event"):
                    event = snap["last_events"].get(name)
                    if event is None or (latest is not None
                                         and latest.quality is Quality.COMM_LOSS):
                        continue  # no event yet / events stay comm-loss after an outage
                    expected = event[point.path or ""]
                else:
                    expected = body[point.path or ""]
                if latest is None or not latest.good or latest.value != expected \
                        or type(latest.value) is not type(expected):
                    wrong.append(f"{door(name)}.{point.name}: "
                                 f"{latest.value if latest else None!r} "
                                 f"({latest.quality if latest else 'no reading'}), "
                                 f"simulator {expected!r}")
        return wrong

    async def consistent(self) -> None:
        await self.sink.until(lambda: not self.mismatches(), lambda: f"decoded values to "
                              f"match the simulator: {self.mismatches()}")

    async def event(self, name: str, event: str, *, since: int | None = None
                    ) -> dict[str, Any]:
        """Wait for ``event`` at door ``name``; the event points decoded from its message.

        Taken from that message's readings (they follow its ``event`` reading), not the
        latest ones: the next event may arrive in the same read and be decoded before this
        task runs.
        """
        found = await self.sink.next(door(name), "event", lambda x: x.value == event,
                                     since=since)
        readings = self.sink.readings
        start = next(i for i, r in enumerate(readings) if r is found)
        points = {r.point: r.value for r in readings[start:start + 4] if r.device == found.device}
        assert points.get("hik_minor") == EVENT_CODES[event][1], (event, points)
        return {p: points[p] for p in ("event", "card", "hik_major", "hik_minor")}


@contextlib.asynccontextmanager
async def rig(mosquitto: Mosquitto, **options: Any) -> AsyncIterator[Rig]:
    config = site(mosquitto.port)
    [driver] = build_mqtt_drivers(config, SystemClock())
    sim_options: dict[str, Any] = {"doors": DOORS, "seed": 3, "heartbeat": 0.3,
                                   "unlock_time": 0.6, "pass_time": 0.3,
                                   "held_open_after": HELD_AFTER, "reconnect_initial": 0.05,
                                   "reconnect_max": 0.2, "connect_timeout": 2.0, **options}
    sim = AccessControlSim(CTRL, host="127.0.0.1", port=mosquitto.port, **sim_options)
    async with driver_and_sim(driver, sim) as sink:
        the_rig = Rig(sim, driver, sink, config)
        await the_rig.consistent()
        yield the_rig


# --------------------------------------------------------------------------- decoding


@pytest.mark.mosquitto
async def test_every_profile_point_decodes_to_the_simulator_state(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        for name, zone in DOORS.items():
            assert r.sink.latest(door(name), "zone").value == zone  # type: ignore[union-attr]
            assert r.sink.latest(door(name), "locked").value is True  # type: ignore[union-attr]
            assert r.sink.latest(door(name), "contact").value == "closed"  # type: ignore[union-attr]
            assert r.sink.latest(door(name), "controller").value == CTRL  # type: ignore[union-attr]

        r.sim.apply("card", {"door": "AC1-D1", "card": "0000BEEF", "pass": False})
        r.sim.apply("forced_open", {"door": "AC1-D2"})
        r.sim.apply("tamper", {"door": "AC1-D3"})
        await r.consistent()
        assert r.sink.latest(door("AC1-D2"), "alarm").value == "forced_open"  # type: ignore[union-attr]
        assert r.sink.latest(door("AC1-D3"), "alarm").value == "tamper"  # type: ignore[union-attr]
        assert r.sink.latest(door("AC1-D1"), "card").value == "0000BEEF"  # type: ignore[union-attr]
        reading = r.sink.latest(door("AC1-D1"), "locked")
        assert reading is not None
        assert reading.source_ts is not None
        assert abs(reading.source_ts - reading.received_ts) < 1.0
        assert r.driver.health().counters["malformed"] == 0


@pytest.mark.mosquitto
async def test_valid_card_unlocks_opens_closes_and_relocks(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("card", {"door": "AC1-D1", "card": "12345678"})
        assert await r.event("AC1-D1", "card_valid") == {
            "event": "card_valid", "card": "12345678", "hik_major": 5, "hik_minor": 1}
        await r.sink.value(door("AC1-D1"), "locked", False)
        await r.sink.value(door("AC1-D1"), "open", True)
        await r.sink.value(door("AC1-D1"), "open", False)
        await r.sink.value(door("AC1-D1"), "locked", True)
        events = [x.value for x in r.sink.readings
                  if x.device == door("AC1-D1") and x.point == "event" and x.good]
        assert events[-3:] == ["card_valid", "door_opened", "door_closed"]

        # The same card cannot enter twice without leaving (anti-passback)...
        r.sim.apply("card", {"door": "AC1-D1", "card": "12345678"})
        assert (await r.event("AC1-D1", "anti_passback"))["hik_minor"] == 0x0A
        # ...but may leave, and then enter again.
        r.sim.apply("card", {"door": "AC1-D1", "card": "12345678", "direction": "out"})
        await r.sink.next(door("AC1-D1"), "event", lambda x: x.value == "card_valid")
        await r.consistent()


@pytest.mark.mosquitto
async def test_forced_and_held_open_doors(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("forced_open", {"door": "AC1-D2"})
        assert await r.event("AC1-D2", "door_forced") == {
            "event": "door_forced", "card": "", "hik_major": 5, "hik_minor": 0x1B}
        await r.sink.value(door("AC1-D2"), "forced", True)
        assert r.sink.latest(door("AC1-D2"), "locked").value is True  # type: ignore[union-attr]
        r.sim.apply("close", {"door": "AC1-D2"})
        await r.sink.value(door("AC1-D2"), "forced", False)
        await r.sink.value(door("AC1-D2"), "alarm", "none")

        mark = len(r.sink.readings)
        r.sim.apply("open", {"door": "AC1-D1"})
        opened = await r.sink.value(door("AC1-D1"), "open", True)
        assert r.sink.latest(door("AC1-D1"), "held").value is False  # type: ignore[union-attr]
        held = await r.sink.value(door("AC1-D1"), "held", True)
        assert held.received_ts - opened.received_ts >= HELD_AFTER * 0.8
        assert (await r.event("AC1-D1", "door_held_open", since=mark))["hik_minor"] == 0x1C
        assert r.sink.latest(door("AC1-D1"), "alarm").value == "held_open"  # type: ignore[union-attr]
        r.sim.apply("close", {"door": "AC1-D1"})
        await r.sink.value(door("AC1-D1"), "held", False)
        await r.sink.value(door("AC1-D1"), "locked", True)
        await r.consistent()


@pytest.mark.mosquitto
async def test_invalid_card_burst_raises_the_repeated_failure_alarm(
        mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        start = len(r.sink.readings)
        r.sim.apply("invalid_card_burst", {"door": "AC1-D3", "count": 5})
        assert await r.event("AC1-D3", "card_max_auth_fail") == {
            "event": "card_max_auth_fail", "card": r.sim.snapshot()["last_events"]["AC1-D3"][
                "card"], "hik_major": 1, "hik_minor": 0x40C}
        events = [x.value for x in r.sink.readings[start:]
                  if x.device == door("AC1-D3") and x.point == "event"]
        assert events == ["card_invalid"] * 5 + ["card_max_auth_fail"]
        assert r.sink.latest(door("AC1-D3"), "locked").value is True  # type: ignore[union-attr]

        r.sim.apply("card", {"door": "AC1-D3", "result": "expired"})
        assert (await r.event("AC1-D3", "card_expired"))["hik_minor"] == 0x08
        r.sim.apply("card", {"door": "AC1-D3", "result": "no_right"})
        assert (await r.event("AC1-D3", "card_no_right"))["hik_minor"] == 0x06


@pytest.mark.mosquitto
async def test_duress_and_tamper(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("duress", {"door": "AC1-D2", "card": "00D0D0D0"})
        assert await r.event("AC1-D2", "duress") == {
            "event": "duress", "card": "00D0D0D0", "hik_major": 1, "hik_minor": 0x40A}
        await r.sink.value(door("AC1-D2"), "open", True)  # the door opens as usual

        r.sim.apply("tamper", {"door": "AC1-D3"})
        assert (await r.event("AC1-D3", "tamper"))["hik_minor"] == 0x406
        await r.sink.value(door("AC1-D3"), "tamper", True)
        r.sim.apply("tamper", {"door": "AC1-D3", "on": False})
        await r.sink.value(door("AC1-D3"), "tamper", False)
        await r.consistent()


@pytest.mark.mosquitto
async def test_fire_signal_releases_its_zone_but_not_a_stuck_lock(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        r.sim.apply("stuck_locked", {"door": "AC1-D2"})
        result = r.sim.apply("fire_signal", {"zone": 1})
        assert result == (f"{CTRL}: zone 1 fire signal on: AC1-D1, AC1-D2 released; "
                          f"still locked: AC1-D2")
        assert (await r.event("AC1-D1", "fire_input"))["hik_minor"] == 0x415
        await r.sink.value(door("AC1-D1"), "locked", False)
        await r.sink.value(door("AC1-D1"), "fire_release", True)
        await r.sink.value(door("AC1-D2"), "fire_release", True)
        await r.consistent()
        # The stuck door still reports locked: what the gateway must alarm on.
        assert r.sink.latest(door("AC1-D2"), "locked").value is True  # type: ignore[union-attr]
        # Zone 2 is not on fire.
        assert r.sink.latest(door("AC1-D3"), "locked").value is True  # type: ignore[union-attr]
        assert r.sink.latest(door("AC1-D3"), "fire_release").value is False  # type: ignore[union-attr]

        # A released door may stand open without a held-open alarm.
        r.sim.apply("open", {"door": "AC1-D1"})
        await r.sink.value(door("AC1-D1"), "open", True)

        r.sim.apply("fire_signal", {"zone": 1, "active": False})
        assert (await r.event("AC1-D1", "fire_input_restored"))["hik_minor"] == 0x417
        assert r.sink.latest(door("AC1-D1"), "held").value is False  # type: ignore[union-attr]
        r.sim.apply("close", {"door": "AC1-D1"})
        await r.sink.value(door("AC1-D1"), "locked", True)
        await r.sink.value(door("AC1-D1"), "fire_release", False)
        await r.consistent()


# --------------------------------------------------------------------------- faults


@pytest.mark.mosquitto
async def test_heartbeat_and_silent_controller(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        first = await r.sink.next(f"acs-{CTRL}", "heartbeat_seq")
        second = await r.sink.next(f"acs-{CTRL}", "heartbeat_seq")
        assert isinstance(first.value, int)
        assert second.value == first.value + 1
        assert second.received_ts - first.received_ts == pytest.approx(0.3, abs=0.2)
        r.sim.apply("ac_power", {"on": False})
        await r.sink.value(f"acs-{CTRL}", "ac_power", False)

        r.sim.apply("silent", {})
        lost = await r.sink.next(f"acs-{CTRL}", "heartbeat_seq",
                                 lambda x: x.quality is Quality.COMM_LOSS)
        assert lost.error == f"no message for {STALE:g} s"
        await r.sink.until(lambda: all(
            r.sink.latest(door(d), "locked").quality is Quality.COMM_LOSS  # type: ignore[union-attr]
            for d in DOORS), "every door comm-loss")
        assert r.sim.connected

        r.sim.apply("clear_faults", {})
        await r.sink.value(f"acs-{CTRL}", "online", True)
        await r.sink.next(f"acs-{CTRL}", "heartbeat_seq", lambda x: x.good)
        await r.consistent()


@pytest.mark.mosquitto
async def test_malformed_skewed_and_disconnected(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r:
        d1 = door("AC1-D1")
        r.sim.apply("malformed", {"kind": "bad_json"})  # the first door's state by default
        bad = await r.sink.next(d1, "locked", lambda x: x.quality is Quality.BAD)
        assert (bad.error or "").startswith("payload is not JSON")
        r.sim.apply("malformed", {"kind": "wrong_type", "door": "AC1-D2"})
        bad = await r.sink.next(door("AC1-D2"), "locked", lambda x: x.quality is Quality.BAD)
        assert bad.error == "expected true/false, 1/0 or on/off, got 2 (a value map can " \
                            "translate it)"
        r.sim.apply("malformed", {"kind": "missing_field", "door": "AC1-D3", "field": "zone"})
        bad = await r.sink.next(door("AC1-D3"), "zone", lambda x: x.quality is Quality.BAD)
        assert bad.error == "field 'zone' is missing"
        assert r.driver.health().counters["malformed"] >= 11 + 1 + 1
        await r.consistent()  # the next heartbeat is well-formed again

        r.sim.apply("clock_skew", {"seconds": -3600})
        r.sim.apply("forced_open", {"door": "AC1-D1"})
        forced = await r.sink.value(d1, "forced", True)
        assert forced.source_ts is not None
        assert forced.source_ts - forced.received_ts == pytest.approx(-3600, abs=1.0)
        r.sim.apply("clear_faults", {})

        r.sim.apply("disconnect", {"seconds": 1.2})
        offline = await r.sink.value(f"acs-{CTRL}", "online", False)  # the will
        lost = await r.sink.next(d1, "open", lambda x: x.quality is Quality.COMM_LOSS)
        assert lost.received_ts - offline.received_ts >= STALE * 0.9
        await r.sink.value(f"acs-{CTRL}", "online", True)
        await r.consistent()
        assert r.sink.latest(d1, "forced").value is True  # type: ignore[union-attr]


@pytest.mark.mosquitto
async def test_command_topic(mosquitto: Mosquitto) -> None:
    async with rig(mosquitto) as r, aiomqtt.Client("127.0.0.1", mosquitto.port) as engineer:
        await engineer.subscribe(f"acs/{CTRL}/cmd/result", qos=1)
        # The event may reach the gateway before the reply reaches us: look from here on.
        since = len(r.sink.readings)
        await engineer.publish(f"acs/{CTRL}/cmd", json.dumps(
            {"action": "card", "params": {"door": "AC1-D3", "result": "invalid",
                                          "card": "BAD0CAFE"}}), qos=1)
        async with asyncio.timeout(WAIT):
            message = await anext(aiter(engineer.messages))
        assert isinstance(message.payload, bytes)
        reply = json.loads(message.payload)
        assert reply["ok"] is True
        assert reply["result"] == f"{CTRL}: AC1-D3: card BAD0CAFE -> card_invalid"
        assert (await r.event("AC1-D3", "card_invalid", since=since))["card"] == "BAD0CAFE"


# --------------------------------------------------------------------------- without a broker


def test_actions_are_listed_validated_and_seeded() -> None:
    def controller(seed: int) -> AccessControlSim:
        return AccessControlSim("C", host="127.0.0.1", port=1, doors=2, seed=seed)

    sim = controller(1)
    as_protocol: Simulator = sim
    assert as_protocol.kind == "access_control"
    assert list(sim.model.doors) == ["C-D1", "C-D2"]
    names = [a.name for a in sim.actions()]
    assert len(names) == len(set(names))
    for required in ("card", "invalid_card_burst", "forced_open", "open", "close",
                     "anti_passback", "tamper", "duress", "fire_signal", "stuck_locked",
                     "malformed", "disconnect", "clock_skew", "silent", "clear_faults"):
        assert required in names
    params: Mapping[str, Any] = {"door": "C-D1", "zone": 1, "seconds": 1, "kind": "bad_json"}
    for name in names:
        assert sim.apply(name, params).startswith("C: ")
    with pytest.raises(ActionError, match="no door 'X'"):
        sim.apply("card", {"door": "X"})
    with pytest.raises(ActionError, match="parameter 'door' is required"):
        sim.apply("forced_open", {})
    with pytest.raises(ActionError, match="result"):
        sim.apply("card", {"door": "C-D1", "result": "stolen"})
    with pytest.raises(ValueError, match="one topic level"):
        AccessControlSim("C", host="h", port=1, doors=["a/b"])
    # Card numbers come from the seed.
    def reads(seed: int) -> list[str]:
        one = controller(seed)
        return [one.apply("card", {"door": "C-D1", "pass": False}) for _ in range(3)]

    cards = [reads(seed) for seed in (4, 4, 5)]
    assert cards[0] == cards[1]
    assert cards[0] != cards[2]
