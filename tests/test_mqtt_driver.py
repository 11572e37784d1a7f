"""The MQTT driver against a real mosquitto, published to by a separate aiomqtt client.

Nothing of paho or aiomqtt is mocked. Every wait is for a condition with a bounded timeout;
stale timers and log rate limits run on a FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.base import ReadingSink
from drivers.mqtt import MqttDriver, build_mqtt_drivers, describe_subscriptions
from drivers.mqtt._payload import PointDecoder
from gateway.clock import Clock, FakeClock, SystemClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading
from gateway.mqtt_client import LinkState, MqttSession
from tests.support import Mosquitto, free_port, make_tls_files, tls_listener_conf, wait_port

pytestmark = pytest.mark.mosquitto

WAIT = 4.0  # upper bound for any condition; tests normally pass in milliseconds


# --------------------------------------------------------------------------- helpers


class Sink:
    """Collects readings and lets a test wait until some arrive."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        #: (readings, urgent) per call: one call per message.
        self.batches: list[tuple[int, bool]] = []
        #: Readings handed over as urgent (life-safety).
        self.urgent: list[Reading] = []
        self._changed = asyncio.Event()

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        self.readings.extend(readings)
        self.batches.append((len(readings), urgent))
        if urgent:
            self.urgent.extend(readings)
        self._changed.set()

    def of(self, device: str, point: str | None = None) -> list[Reading]:
        return [r for r in self.readings
                if r.device == device and (point is None or r.point == point)]

    async def wait_for(self, predicate: Callable[[Reading], bool],
                       count: int = 1) -> list[Reading]:
        """Wait (at most WAIT seconds) until ``count`` readings satisfy ``predicate``."""
        async with asyncio.timeout(WAIT):
            while True:
                found = [r for r in self.readings if predicate(r)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def next(self, device: str, point: str) -> Reading:
        """The first reading of ``device.point`` after the ones already collected."""
        seen = len(self.of(device, point))
        found = await self.wait_for(lambda r: r.device == device and r.point == point,
                                    count=seen + 1)
        return found[seen]


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait (at most WAIT seconds) until ``condition()`` holds."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


def site_config(port: int, devices: list[dict[str, Any]], **broker: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "阳光花园", "gateway_id": "gw1"},
        "brokers": {"local": {"host": "127.0.0.1", "port": port, "connect_timeout": 2,
                              "reconnect": {"initial": 0.05, "max": 0.2}, **broker}},
        "devices": devices,
    })


def only_driver(config: GatewayConfig, clock: Clock) -> MqttDriver:
    drivers = build_mqtt_drivers(config, clock)
    assert len(drivers) == 1
    return drivers[0]


@contextlib.asynccontextmanager
async def running(driver: MqttDriver, sink: ReadingSink, *, subscribed: int = 1) -> AsyncIterator[
        asyncio.Task[None]]:
    """Run the driver until the block ends; wait first until it has subscribed."""
    task = asyncio.create_task(driver.run(sink), name="test-driver")
    try:
        if subscribed:
            await wait_until(lambda: driver.health().counters["subscribed"] >= subscribed)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled(), "the driver must not swallow cancellation"


async def publish(port: int, *messages: tuple[str, str | bytes], retain: bool = False,
                  **client: Any) -> None:
    async with aiomqtt.Client("127.0.0.1", port, **client) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=1, retain=retain)


DOORS = {
    "id": "door-{door}", "driver": "mqtt", "kind": "access_door", "qos": 1,
    "points": [
        {"name": "open", "topic": "sunny/door/{door}/state", "path": "status.door",
         "type": "bool", "map": {"OPEN": True, "CLOSED": False}},
        {"name": "battery", "topic": "sunny/door/{door}/state", "path": "battery[0].level",
         "type": "number", "scale": 0.1},
    ],
}
METER = {
    "id": "meter-1", "driver": "mqtt", "kind": "energy_meter", "qos": 0,
    "points": [
        {"name": "kwh", "topic": "sunny/meter/1/kwh"},
        {"name": "status", "topic": "sunny/meter/1/status"},
        {"name": "online", "topic": "sunny/meter/1/online"},
    ],
}
FIRE = {
    "id": "fire-panel", "driver": "mqtt", "kind": "fire_panel", "qos": 2,
    "points": [{"name": "alarm", "topic": "sunny/fire/#", "path": "alarm"}],
}


# --------------------------------------------------------------------------- decoding


async def test_json_plain_map_templated_ids_and_wildcard(mosquitto: Mosquitto) -> None:
    config = site_config(mosquitto.port, [DOORS, METER, FIRE])
    driver = only_driver(config, SystemClock())
    assert driver.name == "mqtt[local]"
    assert driver.client_id == "propgw-gw1-local"
    # The two door points share one filter: one subscription, at the highest QoS asked for.
    assert sorted(driver.subscriptions) == [
        ("sunny/door/+/state", 1), ("sunny/fire/#", 2), ("sunny/meter/1/kwh", 0),
        ("sunny/meter/1/online", 0), ("sunny/meter/1/status", 0)]
    sink = Sink()
    async with running(driver, sink):
        await publish(
            mosquitto.port,
            ("sunny/door/1/state", '{"status": {"door": "OPEN"}, "battery": [{"level": 875}]}'),
            ("sunny/door/2/state", '{"status": {"door": "CLOSED"}, "battery": [{"level": 1000}]}'),
            ("sunny/meter/1/kwh", "12345.6"),
            ("sunny/meter/1/status", "running"),
            ("sunny/meter/1/online", "true"),
            ("sunny/fire/building-3/zone/7", '{"alarm": true, "text": "smoke"}'),
        )
        await sink.wait_for(lambda r: r.device == "fire-panel")
        await sink.wait_for(lambda r: r.device == "door-2", count=2)

    values = {(r.device, r.point): r.value for r in sink.readings}
    assert values == {
        ("door-1", "open"): True, ("door-1", "battery"): pytest.approx(87.5),
        ("door-2", "open"): False, ("door-2", "battery"): pytest.approx(100.0),
        ("meter-1", "kwh"): 12345.6, ("meter-1", "status"): "running",
        ("meter-1", "online"): True,
        ("fire-panel", "alarm"): True,
    }
    assert all(r.quality is Quality.GOOD and r.error is None for r in sink.readings)
    assert all(r.received_ts > 1.7e9 for r in sink.readings)
    health = driver.health()
    assert health.devices == {"door-1": "ok", "door-2": "ok", "meter-1": "ok",
                              "fire-panel": "ok"}
    assert health.counters["messages"] == 6
    assert health.counters["readings"] == 8
    assert health.counters["malformed"] == 0
    assert health.state == "stopped"


async def test_source_timestamp_and_one_json_parse_for_many_points(
        mosquitto: Mosquitto) -> None:
    lift = {"id": "lift-{car}", "driver": "mqtt", "points": [
        {"name": "floor", "topic": "b/{car}/lift", "path": "pos.floor", "type": "int",
         "timestamp_path": "ts"},
        {"name": "door", "topic": "b/{car}/lift", "path": "door", "type": "string",
         "timestamp_path": "ts"},
    ]}
    driver = only_driver(site_config(mosquitto.port, [lift]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("b/A/lift", '{"pos": {"floor": 7.0}, "door": "closed", '
                                   '"ts": 1767225600123}'))
        await sink.wait_for(lambda r: r.device == "lift-A", count=2)
    by_point = {r.point: r for r in sink.readings}
    assert by_point["floor"].value == 7
    assert by_point["door"].value == "closed"
    assert by_point["floor"].source_ts == pytest.approx(1767225600.123)


async def test_malformed_payload_is_counted_logged_rate_limited_and_survived(
        mosquitto: Mosquitto, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.mqtt")
    driver = only_driver(site_config(mosquitto.port, [DOORS]), fake_clock)
    sink = Sink()

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name.startswith("drivers.mqtt") and r.levelno == logging.WARNING]

    async with running(driver, sink):
        await publish(mosquitto.port, ("sunny/door/5/state", "{not json"))
        bad = await sink.wait_for(lambda r: r.quality is Quality.BAD, count=2)
        assert {r.point for r in bad} == {"open", "battery"}
        assert all(r.device == "door-5" and r.value is None for r in bad)
        assert bad[0].error is not None
        assert bad[0].error.startswith("payload is not JSON")
        assert driver.health().counters["malformed"] == 2
        assert len(warnings()) == 2  # first one per point
        assert "door-5.open" in warnings()[0]

        # The next good message is decoded: one bad payload never stops the driver.
        await publish(mosquitto.port, ("sunny/door/5/state",
                                       '{"status": {"door": "OPEN"}, "battery": [{"level": 5}]}'))
        good = await sink.wait_for(lambda r: r.quality is Quality.GOOD, count=2)
        assert {r.point: r.value for r in good} == {"open": True,
                                                    "battery": pytest.approx(0.5)}

        # A second bad value within 60 s is counted but logged at DEBUG only...
        await publish(mosquitto.port, ("sunny/door/5/state",
                                       '{"status": {"door": "AJAR"}, "battery": [{"level": 5}]}'))
        await sink.wait_for(lambda r: r.quality is Quality.BAD, count=3)
        assert driver.health().counters["malformed"] == 3
        assert len(warnings()) == 2
        # ...and a later one says how many were suppressed.
        await fake_clock.advance(60)
        await publish(mosquitto.port, ("sunny/door/5/state",
                                       '{"status": {"door": "AJAR"}, "battery": [{"level": 5}]}'))
        await sink.wait_for(lambda r: r.quality is Quality.BAD, count=4)
        assert len(warnings()) == 3
        assert "(1 similar suppressed" in warnings()[-1]
        assert "got 'AJAR'" in warnings()[-1]


async def test_topic_level_that_is_no_valid_device_id_is_counted(mosquitto: Mosquitto) -> None:
    driver = only_driver(site_config(mosquitto.port, [DOORS]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("sunny/door/bad id/state", '{"status": {"door": "OPEN"}}'),
                      ("sunny/door/3/state", '{"status": {"door": "OPEN"}, '
                                             '"battery": [{"level": 1}]}'))
        await sink.wait_for(lambda r: r.device == "door-3", count=2)
        assert driver.health().counters["bad_topic"] == 1
    assert {r.device for r in sink.readings} == {"door-3"}


PANEL_ZONES = {
    "id": "panel-zone-{zone}", "driver": "mqtt", "kind": "fire_zone",
    "split_by": {"zone": "zone"},
    "points": [
        {"name": "event", "topic": "sunny/fire/panel1/events", "path": "event",
         "type": "string", "timestamp_path": "ts"},
        {"name": "detector", "topic": "sunny/fire/panel1/events", "path": "detector"},
    ],
}


async def test_one_topic_split_by_a_payload_field_feeds_only_the_zone_it_names(
        mosquitto: Mosquitto) -> None:
    driver = only_driver(site_config(mosquitto.port, [PANEL_ZONES]), SystemClock())
    assert driver.subscriptions == (("sunny/fire/panel1/events", 1),)
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("sunny/fire/panel1/events",
                       '{"zone": 3, "event": "FIRE", "detector": 12, "ts": 1767225600}'),
                      ("sunny/fire/panel1/events",
                       '{"zone": 1, "event": "FIRE", "detector": 4, "ts": 1767225601}'),
                      ("sunny/fire/panel1/events",
                       '{"zone": 1, "event": "NORMAL", "detector": 0, "ts": 1767225602}'))
        await sink.wait_for(lambda r: r.device == "panel-zone-1" and r.value == "NORMAL")
    events = [(r.device, r.value) for r in sink.readings if r.point == "event"]
    assert events == [("panel-zone-3", "FIRE"), ("panel-zone-1", "FIRE"),
                      ("panel-zone-1", "NORMAL")]
    assert [r.value for r in sink.of("panel-zone-3", "detector")] == [12]
    assert sink.of("panel-zone-3", "event")[0].source_ts == 1767225600
    health = driver.health()
    assert health.devices == {"panel-zone-3": "ok", "panel-zone-1": "ok"}
    assert health.counters["readings"] == 6
    assert health.counters["bad_split"] == 0


async def test_a_message_without_the_split_field_feeds_no_device_and_is_logged_once(
        mosquitto: Mosquitto, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.mqtt")
    driver = only_driver(site_config(mosquitto.port, [PANEL_ZONES]), fake_clock)
    sink = Sink()

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name.startswith("drivers.mqtt") and r.levelno == logging.WARNING
                and "feeds no device" in r.getMessage()]

    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("sunny/fire/panel1/events", '{"event": "FIRE", "detector": 1}'),
                      ("sunny/fire/panel1/events", '{"zone": "zone 2", "event": "FIRE"}'),
                      ("sunny/fire/panel1/events", "FIRE zone 2"),
                      ("sunny/fire/panel1/events", '{"zone": 2, "event": "FIRE", "detector": 7}'))
        await sink.wait_for(lambda r: r.device == "panel-zone-2", count=2)
        assert driver.health().counters["bad_split"] == 3
        assert {r.device for r in sink.readings} == {"panel-zone-2"}
        assert len(warnings()) == 1  # the rest within the interval at DEBUG only
        assert ("message on 'sunny/fire/panel1/events' feeds no device 'panel-zone-{zone}': "
                "split_by zone: field 'zone' is missing") in warnings()[0]
        await fake_clock.advance(60)
        await publish(mosquitto.port, ("sunny/fire/panel1/events", '{"event": "FIRE"}'),
                      ("sunny/fire/panel1/events",
                       '{"zone": 2, "event": "NORMAL", "ts": 1767225600}'))
        await sink.wait_for(lambda r: r.device == "panel-zone-2" and r.value == "NORMAL")
        assert len(warnings()) == 2
        assert "(2 similar suppressed" in warnings()[-1]
    assert driver.health().counters["bad_topic"] == 0


async def test_a_templated_entry_makes_at_most_max_devices(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """A panel that names ever new zones (a faulty one, or garbage) cannot grow the gateway's
    memory: past max_devices new ids feed nothing, are counted and warned about once; the
    devices already made carry on."""
    caplog.set_level(logging.WARNING, logger="drivers.mqtt")
    driver = only_driver(site_config(mosquitto.port, [{**PANEL_ZONES, "max_devices": 2}]),
                         SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port, *[
            ("sunny/fire/panel1/events", f'{{"zone": {zone}, "event": "FIRE", "detector": 1}}')
            for zone in (1, 2, 3, 4, 5, 1)])
        await sink.wait_for(lambda r: r.device == "panel-zone-1" and r.point == "event",
                            count=2)
    assert {r.device for r in sink.readings} == {"panel-zone-1", "panel-zone-2"}
    health = driver.health()
    assert health.devices == {"panel-zone-1": "ok", "panel-zone-2": "ok"}
    assert health.counters["too_many_devices"] == 3
    refused = [r.getMessage() for r in caplog.records if "max_devices" in r.getMessage()]
    assert len(refused) == 1, refused
    assert "device 'panel-zone-3' refused: the entry 'panel-zone-{zone}' already made 2 " \
        "devices" in refused[0]


async def test_messages_the_broker_dropped_before_the_gateway_took_them_are_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The gateway is stuck, so it acknowledges nothing: mosquitto sends its in-flight window
    (20), queues 10 more for the gateway and drops the rest. Its own $SYS count of dropped
    messages reaches the driver, which counts exactly what was not delivered, and says so in
    one WARNING."""
    caplog.set_level(logging.WARNING, logger="drivers.mqtt")
    broker = Mosquitto(tmp_path, extra_conf="sys_interval 1\nmax_inflight_messages 20\n"
                                            "max_queued_messages 10\n")
    sensors = {"id": "sensor-{n}", "driver": "mqtt", "kind": "meter",
               "points": [{"name": "temp", "topic": "tele/{n}", "path": "temp"}]}
    release = asyncio.Event()
    sink = Sink()

    async def stuck(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        await release.wait()
        await sink(readings, urgent=urgent)

    with broker.running():
        driver = only_driver(site_config(broker.port, [sensors]), SystemClock())
        task = asyncio.create_task(driver.run(stuck))
        try:
            await wait_until(lambda: driver.health().counters["subscribed"] >= 1)
            await publish(broker.port, *[(f"tele/{i % 5}", f'{{"temp": {i}}}')
                                         for i in range(200)])
            release.set()
            await wait_until(lambda: driver.health().counters["broker_dropped"] > 0)
            taken = len(sink.readings)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    counters = driver.health().counters
    assert 0 < taken < 200, taken
    assert counters["broker_dropped"] == 200 - taken
    warnings = [r.getMessage() for r in caplog.records if "the broker dropped" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"the broker dropped {200 - taken} message(s) before the gateway took them" \
        in warnings[0]


# --------------------------------------------------------------------------- link loss


async def test_broker_restart_gives_comm_loss_then_resubscribes(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    driver = only_driver(site_config(mosquitto.port, [DOORS, METER]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("sunny/door/1/state", '{"status": {"door": "OPEN"}, '
                                             '"battery": [{"level": 900}]}'),
                      ("sunny/door/2/state", '{"status": {"door": "CLOSED"}, '
                                             '"battery": [{"level": 900}]}'))
        await sink.wait_for(lambda r: r.device == "door-2", count=2)

        await asyncio.to_thread(mosquitto.stop)
        lost = await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=7)
        # Every known device, every point: the two doors seen so far, and meter-1 (a literal
        # id, known from the start even though it has said nothing yet).
        assert {(r.device, r.point) for r in lost} == {
            ("door-1", "open"), ("door-1", "battery"), ("door-2", "open"),
            ("door-2", "battery"), ("meter-1", "kwh"), ("meter-1", "status"),
            ("meter-1", "online")}
        assert all("broker local unreachable" in (r.error or "") for r in lost)
        assert set(driver.health().devices.values()) == {"comm-loss"}
        await wait_until(lambda: driver.health().counters["connect_failures"] >= 2)
        # Comm-loss is reported once per outage, not once per failed reconnect attempt.
        assert len([r for r in sink.readings if r.quality is Quality.COMM_LOSS]) == 7
        assert driver.health().state in ("down", "connecting")

        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: driver.health().counters["subscribed"] >= 2)
        assert driver.health().state == "connected"
        await publish(mosquitto.port,
                      ("sunny/door/1/state", '{"status": {"door": "CLOSED"}, '
                                             '"battery": [{"level": 880}]}'),
                      ("sunny/door/9/state", '{"status": {"door": "OPEN"}, '
                                             '"battery": [{"level": 10}]}'),
                      ("sunny/meter/1/kwh", "7"))
        assert (await sink.next("door-1", "open")).value is False
        await sink.wait_for(lambda r: r.device == "door-9", count=2)
        await sink.wait_for(lambda r: r.device == "meter-1" and r.good)
    after = [r for r in sink.readings if r.good][-5:]
    assert {(r.device, r.point, r.value) for r in after} >= {
        ("door-1", "open", False), ("door-9", "open", True), ("meter-1", "kwh", 7)}
    health = driver.health()
    assert health.devices["door-1"] == "ok"
    assert health.devices["door-2"] == "comm-loss"  # silent since the outage
    assert health.counters["connects"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("gateway.mqtt")]
    assert any("connection to mqtt://127.0.0.1" in m and "lost" in m for m in messages)
    assert any("connected again" in m for m in messages)


async def test_unreachable_broker_at_start_marks_literal_devices_and_cancels_cleanly() -> None:
    port = free_port()  # nothing listens here
    driver = only_driver(site_config(port, [METER, DOORS]), SystemClock())
    sink = Sink()
    async with running(driver, sink, subscribed=0):
        lost = await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=3)
        await wait_until(lambda: driver.health().counters["connect_failures"] >= 3)
        assert driver.health().last_error
    # Templated doors are unknown until they speak; the meter is known from the config.
    assert {(r.device, r.point) for r in lost} == {("meter-1", "kwh"), ("meter-1", "status"),
                                                   ("meter-1", "online")}
    assert len(sink.readings) == 3


async def test_broker_that_never_answers_connect_leaks_nothing() -> None:
    """A CONNACK timeout leaves aiomqtt 2.5.1's socket and task behind unless we close them."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = only_driver(site_config(port, [METER], connect_timeout=0.2), SystemClock())
    sink = Sink()
    try:
        async with running(driver, sink, subscribed=0):
            await wait_until(lambda: driver.health().counters["connect_failures"] >= 2)
            assert driver.health().last_error == "Operation timed out"
            await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=3)
        # Every attempt's socket was closed: the server saw each connection end.
        await wait_until(lambda: all(w.is_closing() for w in connections))
    finally:
        server.close()
        await server.wait_closed()
    assert len(connections) >= 2


# --------------------------------------------------------------------------- stale_after


async def test_stale_after_gives_comm_loss_on_the_clock(mosquitto: Mosquitto,
                                                        fake_clock: FakeClock) -> None:
    doors = {**DOORS, "stale_after": "30s"}
    panel = {**FIRE, "stale_after": "2m"}
    driver = only_driver(site_config(mosquitto.port, [doors, panel]), fake_clock)
    sink = Sink()
    door_msg = '{"status": {"door": "OPEN"}, "battery": [{"level": 900}]}'
    async with running(driver, sink):
        await publish(mosquitto.port, ("sunny/door/1/state", door_msg))
        await sink.wait_for(lambda r: r.device == "door-1", count=2)

        await fake_clock.advance(29.9)
        assert not [r for r in sink.readings if not r.good]
        await fake_clock.advance(0.1)
        lost = await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=2)
        assert {(r.device, r.point) for r in lost} == {("door-1", "open"),
                                                       ("door-1", "battery")}
        assert lost[0].error == "no message for 30 s"
        assert driver.health().devices["door-1"] == "comm-loss"

        # It speaks again: good readings, and the timer runs again from the new message.
        await fake_clock.advance(10)
        await publish(mosquitto.port, ("sunny/door/1/state", door_msg),
                      ("sunny/door/2/state", door_msg))
        await sink.wait_for(lambda r: r.device == "door-2", count=2)
        await sink.wait_for(lambda r: r.device == "door-1" and r.good, count=4)
        assert driver.health().devices["door-1"] == "ok"
        await fake_clock.advance(29)
        assert len([r for r in sink.readings if not r.good]) == 2
        await fake_clock.advance(1)
        await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=6)

        # The fire panel (a literal id) never said anything: comm-loss 2 min after start.
        assert not sink.of("fire-panel")
        await fake_clock.advance(120 - 70)
        panel_lost = await sink.wait_for(lambda r: r.device == "fire-panel")
        assert panel_lost[0].quality is Quality.COMM_LOSS
        assert panel_lost[0].error == "no message for 120 s"

        # Once everything is comm-loss the watchdog sleeps on nothing but its wake-up event.
        await fake_clock.advance(3600)
        assert len([r for r in sink.readings if not r.good]) == 7
        assert fake_clock.pending == 0


# --------------------------------------------------------------------------- protocol, TLS


async def test_mqtt_v5(mosquitto: Mosquitto) -> None:
    driver = only_driver(site_config(mosquitto.port, [DOORS], protocol="5"), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port, ("sunny/door/4/state",
                                       '{"status": {"door": "OPEN"}, "battery": [{"level": 1}]}'),
                      protocol=aiomqtt.ProtocolVersion.V5)
        readings = await sink.wait_for(lambda r: r.device == "door-4", count=2)
    assert {r.point: r.value for r in readings} == {"open": True,
                                                    "battery": pytest.approx(0.1)}


async def test_retained_value_arrives_on_subscribe(mosquitto: Mosquitto) -> None:
    await publish(mosquitto.port, ("sunny/meter/1/kwh", "99"), retain=True)
    driver = only_driver(site_config(mosquitto.port, [METER]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        reading = await sink.next("meter-1", "kwh")
    assert reading.value == 99


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    files = make_tls_files(tmp_path)
    tls_port = free_port()
    broker = Mosquitto(tmp_path, extra_conf=tls_listener_conf(tls_port, files))
    with broker.running():
        wait_port(tls_port)
        yield broker, tls_port, files


async def test_tls_with_ca_and_client_certificate(tls_broker: Any) -> None:
    broker, tls_port, files = tls_broker
    tls = {"ca_file": str(files.ca), "cert_file": str(files.client_cert),
           "key_file": str(files.client_key)}
    driver = only_driver(site_config(tls_port, [METER], tls=tls), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        # Published over the plain listener of the same broker.
        await publish(broker.port, ("sunny/meter/1/kwh", "42"))
        reading = await sink.next("meter-1", "kwh")
    assert reading.value == 42
    assert driver.health().counters["connect_failures"] == 0


@pytest.mark.parametrize("mistake", ["no client certificate", "wrong CA"])
async def test_tls_refuses_what_it_should(tls_broker: Any, mistake: str) -> None:
    _, tls_port, files = tls_broker
    tls: dict[str, str] = {"ca_file": str(files.ca)}
    if mistake == "wrong CA":
        tls = {"ca_file": str(files.other_ca), "cert_file": str(files.client_cert),
               "key_file": str(files.client_key)}
    driver = only_driver(site_config(tls_port, [METER], tls=tls, connect_timeout=1),
                         SystemClock())
    sink = Sink()
    async with running(driver, sink, subscribed=0):
        await wait_until(lambda: driver.health().counters["connect_failures"] >= 1)
        await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS, count=3)
    assert driver.health().counters["connects"] == 0
    assert driver.health().counters["subscribed"] == 0
    if mistake == "wrong CA":
        assert "CERTIFICATE_VERIFY_FAILED" in (driver.health().last_error or "")


# --------------------------------------------------------------------------- building


def test_build_one_driver_per_broker_with_enabled_devices() -> None:
    config = GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "x", "gateway_id": "gw7"},
        "brokers": {"a": {"host": "10.0.0.1"}, "b": {"host": "10.0.0.2", "client_id": "mine"},
                    "c": {"host": "10.0.0.3"}, "up": {"host": "platform.example"}},
        "upstream": {"broker": "up"},
        "devices": [
            {**METER, "broker": "b"},
            {**DOORS, "broker": "a"},
            {**FIRE, "broker": "c", "enabled": False},
            {"id": "plc", "driver": "modbus-tcp", "host": "10.0.0.9"},
        ],
    })
    drivers = build_mqtt_drivers(config, SystemClock())
    assert [(d.name, d.client_id, [x.id for x in d.devices]) for d in drivers] == [
        ("mqtt[a]", "propgw-gw7-a", ["door-{door}"]),
        ("mqtt[b]", "mine", ["meter-1"]),
    ]
    assert describe_subscriptions(config) == [
        "mqtt meter-1 via broker b: 3 point(s) on sunny/meter/1/kwh, sunny/meter/1/status, "
        "sunny/meter/1/online (QoS 0)",
        "mqtt door-{door} via broker a: 2 point(s) on sunny/door/+/state (QoS 1)",
    ]


def test_broker_may_be_omitted_when_there_is_one_device_broker() -> None:
    config = GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "x", "gateway_id": "gw7"},
        "brokers": {"local": {"host": "127.0.0.1"}, "up": {"host": "platform.example"}},
        "upstream": {"broker": "up"},
        "devices": [METER],
    })
    [driver] = build_mqtt_drivers(config, SystemClock())
    assert driver.name == "mqtt[local]"
    assert build_mqtt_drivers(config.model_copy(update={"devices": []}), SystemClock()) == []


def test_unusable_paths_fail_when_building() -> None:
    bad = {**METER, "points": [{"name": "v", "topic": "t", "path": "a..b"},
                               {"name": "w", "topic": "t", "timestamp_path": "ts"}]}
    config = GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "x", "gateway_id": "gw7"},
        "brokers": {"local": {"host": "127.0.0.1"}},
        "devices": [bad],
    })
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_mqtt_drivers(config, SystemClock())
    text = str(info.value)
    assert "point 'v'" in text
    assert "bad field path 'a..b'" in text
    assert "point 'w'" in text
    assert "timestamp_path needs a JSON payload" in text


async def test_a_running_driver_cannot_be_run_twice(mosquitto: Mosquitto) -> None:
    driver = only_driver(site_config(mosquitto.port, [METER]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        with pytest.raises(RuntimeError, match="already running"):
            await driver.run(sink)
    # ...but it can run again after it stopped (the supervisor restarts crashed stages).
    async with running(driver, sink, subscribed=2):
        await publish(mosquitto.port, ("sunny/meter/1/kwh", "1"))
        await sink.next("meter-1", "kwh")


async def test_an_error_while_serving_is_a_bug_for_the_supervisor_not_a_config_error(
        mosquitto: Mosquitto) -> None:
    """A ValueError from the message loop used to be taken for a certificate problem: every
    device went comm-loss and the reconnect waited the whole back-off cap."""
    cfg = load_config_text(f"""
site: {{id: s, name: s, gateway_id: g}}
brokers: {{b: {{host: 127.0.0.1, port: {mosquitto.port}, reconnect: {{initial: 0.1, max: 60}}}}}}
""").brokers["b"]

    async def serve(client: aiomqtt.Client) -> None:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    session = MqttSession("b", cfg, client_id="t", clock=SystemClock(), on_connected=serve)
    with pytest.raises(ValueError, match="4300 digits"):
        async with asyncio.timeout(5):
            await session.run()
    assert session.counters.failures == 0 and session.state is LinkState.STOPPED


async def test_one_message_is_one_batch_with_its_timestamp_decoded_once(
        mosquitto: Mosquitto, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    points = [{"name": name, "topic": "env/{room}", "path": name, "timestamp_path": "ts"}
              for name in ("temp", "hum", "seq", "sent_us")]
    driver = only_driver(site_config(mosquitto.port, [
        {"id": "env-{room}", "driver": "mqtt", "points": points}]), fake_clock)
    parsed: list[object] = []
    real = PointDecoder._timestamp

    def counting(self: PointDecoder, raw: object) -> float:
        parsed.append(raw)
        return real(self, raw)

    monkeypatch.setattr(PointDecoder, "_timestamp", counting)
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("env/a", '{"ts": "2026-03-01T08:00:00+08:00", "temp": 21.5, "hum": 40, '
                                '"seq": 7, "sent_us": 1772323200000000}'),
                      ("env/b", '{"ts": 1772323201.5, "temp": 20, "hum": 41, "seq": 8, '
                                '"sent_us": 1}'))
        await sink.wait_for(lambda r: True, count=8)
    assert sink.batches == [(4, False), (4, False)], "one hand-over per message"
    assert [(r.device, r.point, r.value, r.source_ts) for r in sink.readings[:4]] == [
        ("env-a", "temp", 21.5, 1772323200.0), ("env-a", "hum", 40, 1772323200.0),
        ("env-a", "seq", 7, 1772323200.0), ("env-a", "sent_us", 1772323200000000, 1772323200.0)]
    assert {r.source_ts for r in sink.readings[4:]} == {1772323201.5}
    assert parsed == ["2026-03-01T08:00:00+08:00", 1772323201.5], "once per message"
