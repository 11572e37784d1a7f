"""Which MQTT topics are life-safety, and the second connection that carries them.

The overload itself (a flood, shedding, every fire alarm) is in tests/test_mqtt_overload.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt import build_mqtt_drivers, describe_subscriptions, life_safety_points
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.model import Reading
from gateway.mqtt_client import _close_socket as close_socket
from gateway.mqtt_client import build_client
from gateway.mqtt_lane import Lane, _BufferedSocket
from gateway.reload import driver_inputs
from tests.support import Mosquitto, free_port, make_tls_files, tls_listener_conf, wait_port
from tests.test_mqtt_driver import Sink, only_driver, publish, running, site_config, wait_until

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: FP1
    driver: mqtt
    kind: fire_panel
    points:
      - {name: fire, topic: fp/1/fire}
      - {name: supply, topic: fp/1/supply}
    derived:
      - {name: trouble, expr: "supply < 20"}
  - id: "lift-{n}"
    driver: mqtt
    kind: elevator
    points:
      - {name: trapped, topic: "lift/{n}/trapped"}
      - {name: bits, topic: "lift/{n}/bits"}
      - {name: load, topic: "lift/{n}/load"}
    derived:
      - {name: door, from: bits, bit: 3}
      - {name: stuck, expr: "trapped and door"}
  - id: UPS1
    driver: mqtt
    kind: ups
    points:
      - {name: volts, topic: ups/1/volts}
  - id: M1
    driver: mqtt
    kind: meter
    points:
      - {name: kwh, topic: m/1/kwh}
rules:
  - id: fire
    devices: [FP1]
    category: fire_alarm
    priority: P0
    when: {point: fire, eq: true}
    message: {zh: 火警, en: fire}
  - id: fire-trouble
    kind: fire_panel
    category: fire_trouble
    priority: P1
    when: {point: trouble, eq: true}
    message: {zh: 故障, en: trouble}
  - id: entrapment
    kind: elevator
    category: elevator_entrapment
    priority: P0
    when: {point: stuck, eq: true}
    message: {zh: 困人, en: trapped}
  - id: ups-silent
    kind: ups
    category: power
    priority: P1
    when: {comm_loss: true}
    message: {zh: 失联, en: silent}
  - id: meter-high
    kind: meter
    category: energy
    priority: P2
    when: {point: kwh, gt: 100}
    message: {zh: 高, en: high}
"""


def test_points_read_by_p0_and_p1_rules_and_their_inputs_are_life_safety() -> None:
    points = life_safety_points(load_config_text(SITE))
    assert dict(points) == {
        "FP1": {"fire", "trouble", "supply"},  # P0 directly, P1 through a derived point
        "lift-{n}": {"stuck", "trapped", "door", "bits"},  # derived from derived; not load
        "UPS1": {"*"},  # a rule about the whole device's silence
    }, "M1 has only a P2 rule: telemetry"


@pytest.mark.mosquitto
async def test_life_safety_topics_travel_on_a_second_connection(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    fire = {"id": "FP1", "driver": "mqtt", "kind": "fire_panel",
            "points": [{"name": "fire", "topic": "fp/1/fire"},
                       {"name": "supply", "topic": "fp/1/supply"}]}
    meter = {"id": "M1", "driver": "mqtt", "kind": "meter",
             "points": [{"name": "kwh", "topic": "m/1/kwh"}]}
    config = site_config(mosquitto.port, [fire, meter]).model_copy(update={
        "rules": load_config_text(SITE).rules[:1]})
    driver = only_driver(config, fake_clock)
    telemetry, safety = driver.lanes
    assert (telemetry.name, safety.name) == ("telemetry", "life-safety")
    sink = Sink()
    async with running(driver, sink, subscribed=2):
        await publish(mosquitto.port, ("fp/1/fire", "true"), ("fp/1/supply", "24"),
                      ("m/1/kwh", "5"))
        await sink.wait_for(lambda r: True, count=3)
        await wait_until(lambda: safety.counters.taken == 1 and telemetry.counters.taken == 2)
        # The life-safety connection's readings are urgent: they overtake telemetry on the
        # way to the alarms.
        assert {(r.device, r.point) for r in sink.urgent} == {("FP1", "fire")}
        assert sorted(sink.batches) == [(1, False), (1, False), (1, True)]
        health = driver.health()
        assert health.state == "connected"
        assert health.counters["connects"] == 2
        assert (health.counters["messages"], health.counters["unmatched"]) == (3, 0)
        assert health.counters["shed"] == 0
        # The telemetry connection also carries the broker's retained $SYS drop count; a lane
        # reads every packet that arrived together before its consumer runs.
        assert 1 <= health.counters["queued_peak"] <= 3
    log = mosquitto.log.read_text()
    assert " as propgw-gw1-local-safety " in log and " as propgw-gw1-local " in log


@pytest.mark.mosquitto
async def test_without_life_safety_topics_there_is_one_connection(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    meter = {"id": "M1", "driver": "mqtt", "kind": "meter",
             "points": [{"name": "kwh", "topic": "m/1/kwh"}]}
    driver = only_driver(site_config(mosquitto.port, [meter]), fake_clock)
    assert [lane.name for lane in driver.lanes] == ["telemetry"]
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port, ("m/1/kwh", "5"))
        await sink.wait_for(lambda r: r.point == "kwh")
        assert driver.health().counters["connects"] == 1


def test_a_reload_that_moves_a_topic_between_lanes_restarts_the_driver() -> None:
    def inputs(priority: str) -> object:
        config = load_config_text(SITE.replace("priority: P2", f"priority: {priority}"))
        return driver_inputs(config, build_mqtt_drivers(config, FakeClock()))

    assert inputs("P3") == inputs("P2"), "M1 stays telemetry: the driver keeps running"
    assert inputs("P1") != inputs("P2"), "M1's topic moves to the life-safety connection"


@pytest.mark.mosquitto
async def test_the_life_safety_lane_keeps_every_message_past_its_capacity(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # A broker that sends without waiting for acknowledgements, and a stuck pipeline: 300
    # fire messages wait in a lane whose capacity is 100.
    broker = Mosquitto(tmp_path, extra_conf="max_inflight_messages 0\n")
    broker.start()
    try:
        fire = {"id": "fp-{n}", "driver": "mqtt", "kind": "fire_panel",
                "points": [{"name": "fire", "topic": "fp/{n}/fire"}]}
        config = site_config(broker.port, [fire], max_queued_messages=100).model_copy(
            update={"rules": [load_config_text(SITE).rules[0].model_copy(
                update={"devices": None, "kind": "fire_panel"})]})
        driver = only_driver(config, fake_clock)
        [safety] = driver.lanes
        assert safety.name == "life-safety"
        sink = Sink()
        release = asyncio.Event()

        async def stuck(readings: Sequence[Reading], *, urgent: bool = False) -> None:
            await release.wait()
            await sink(readings, urgent=urgent)

        total = 300
        async with running(driver, stuck):
            await publish(broker.port, *((f"fp/{n}/fire", "true") for n in range(total)))
            await wait_until(lambda: safety.waiting == total - 1)
            release.set()
            await sink.wait_for(lambda r: r.point == "fire", count=total)
        assert safety.counters.shed == 0 and safety.counters.peak == total - 1
        assert {r.device for r in sink.readings} == {f"fp-{n}" for n in range(total)}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"mqtt[local]: more than 100 life-safety messages waiting at once "
                            f"({total - 1}); none is shed on this lane: look for a device "
                            f"flooding life-safety topics"]
    finally:
        broker.stop()


def test_check_config_names_the_life_safety_points() -> None:
    lines = describe_subscriptions(load_config_text(SITE))
    assert lines == [
        "mqtt FP1 via broker local: 2 point(s) on fp/1/fire, fp/1/supply (QoS 1); "
        "life-safety: fire, supply",
        "mqtt lift-{n} via broker local: 3 point(s) on lift/+/trapped, lift/+/bits, "
        "lift/+/load (QoS 1); life-safety: bits, trapped",
        "mqtt UPS1 via broker local: 1 point(s) on ups/1/volts (QoS 1); life-safety: all points",
        "mqtt M1 via broker local: 1 point(s) on m/1/kwh (QoS 1)",
    ]


async def test_shedding_is_logged_when_it_starts_then_summarised_once_a_minute(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config_text(SITE)
    driver = build_mqtt_drivers(config, fake_clock)[0]
    link = driver._links[0]
    assert link.lane.name == "telemetry"

    def shed(n: int) -> None:  # what the lane's queue does, then the driver after a message
        link.lane.counters.shed += n
        driver._log_shed(link)

    shed(1)
    for _ in range(59):
        await fake_clock.advance(1)
        shed(100)
    await fake_clock.advance(1)
    shed(5)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == [
        "mqtt[local]: more telemetry messages than the gateway keeps up with: shedding the "
        "oldest beyond 10000 waiting (counted as 'shed'; a summary follows at most every 60 s)",
        "mqtt[local]: 5905 telemetry message(s) shed in the last 60 s (5906 since start)",
    ]


async def _telemetry_lane(cfg: Any, client_id: str, *, capacity: int,
                          linger: float) -> tuple[Lane, Any]:
    """A shedding telemetry lane installed on a new (not yet connected) client."""
    lane = Lane("telemetry", capacity=capacity, sheds=True, linger=linger)
    client = await build_client(cfg, client_id=client_id)
    lane.install(client)
    return lane, client


class _CountingSocket:
    """Counts the reads that reach the socket itself."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        data: bytes = self.sock.recv(size)
        return data

    def pending(self) -> int:
        left: int = self.sock.pending()
        return left

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    @classmethod
    def under(cls, client: Any) -> _CountingSocket:
        """Put a counter between a connected lane's buffered socket and the real one."""
        buffered = client._client._sock
        counting = cls(buffered._sock)
        buffered._sock = counting
        return counting


@pytest.mark.parametrize("linger", [0.0, 0.05], ids=["at-once", "lingering"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_lane_reads_a_burst_in_a_few_large_reads_and_loses_no_byte(
        tmp_path: Path, tls: bool, linger: float) -> None:
    # paho alone reads each packet in three or more recv calls; a lane reads what arrived.
    # The broker sends without waiting for acknowledgements: the burst is in the socket.
    files = make_tls_files(tmp_path) if tls else None
    tls_port = free_port()
    broker = Mosquitto(tmp_path, extra_conf="max_inflight_messages 0\n" + (
        tls_listener_conf(tls_port, files) if files is not None else ""))
    broker.start()
    try:
        if files is not None:
            wait_port(tls_port)
        cfg = site_config(tls_port if files is not None else broker.port, [], tls={
            "ca_file": str(files.ca), "cert_file": str(files.client_cert),
            "key_file": str(files.client_key)} if files is not None else None,
        ).brokers["local"]
        lane, client = await _telemetry_lane(cfg, "burst", capacity=1000, linger=linger)
        total = 300
        burst = [(f"burst/{n % 7}", f'{{"seq": {n}, "pad": "{"x" * (n % 50)}"}}'.encode())
                 for n in range(total)]
        try:
            async with client:
                await client.subscribe("burst/#", qos=1)
                counting = _CountingSocket.under(client)
                if files is None:
                    # The event loop is held until the whole burst waits in the socket.
                    _publish_and_wait_in_socket(broker.port, burst, counting.sock)
                else:  # TLS bytes on the wire cannot be predicted: published as they come
                    await publish(broker.port, *burst)
                await wait_until(lambda: lane.waiting == total)
                got = []
                async for message in lane.messages(client):
                    got.append((message.topic, message.payload))
                    lane.taken(client, message)
                    if len(got) == total:
                        break
        finally:
            close_socket(client)
        assert got == burst
        # paho alone: at least 3 * total. A burst in the socket: a few 64 KiB reads. Over
        # TLS a read returns one TLS record at most, and mosquitto sends a record per packet.
        assert counting.reads <= (2 * total if tls else 3), counting.reads
        assert lane.counters.taken == total and lane.counters.shed == 0
    finally:
        broker.stop()


def _publish_and_wait_in_socket(port: int, burst: list[tuple[str, bytes]], sock: Any) -> None:
    """Publish ``burst`` (QoS 1) and block until its PUBLISH packets (MQTT 3.1.1) all wait in
    ``sock``, unread: the caller's event loop cannot read meanwhile."""
    expected = 0
    for topic, payload in burst:
        remaining = 2 + len(topic) + 2 + len(payload)
        expected += 1 + (1 if remaining < 128 else 2) + remaining
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="burst-pub")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in burst]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    deadline = time.monotonic() + 10
    with socket.socket(fileno=os.dup(sock.fileno())) as peek:  # closes the duplicate only
        while _waiting_bytes(peek) < expected:
            assert time.monotonic() < deadline, "the burst never arrived whole"
            time.sleep(0.01)


def _waiting_bytes(sock: socket.socket) -> int:
    try:
        return len(sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


@pytest.mark.parametrize("linger", [0.0, 0.5], ids=["at-once", "lingering"])
async def test_a_lane_gives_what_arrived_then_ends_when_the_broker_goes(
        tmp_path: Path, linger: float) -> None:
    # Lingering, the socket is not watched for up to ``linger`` after a read: its end is
    # noticed at the next read.
    broker = Mosquitto(tmp_path)
    broker.start()
    stopped = False
    try:
        cfg = site_config(broker.port, []).brokers["local"]
        lane, client = await _telemetry_lane(cfg, "ends", capacity=100, linger=linger)
        got: list[bytes] = []
        try:
            async with client:
                await client.subscribe("ends/#", qos=1)

                async def consume() -> None:
                    async for message in lane.messages(client):
                        assert isinstance(message.payload, bytes)
                        got.append(message.payload)
                        lane.taken(client, message)

                consumer = asyncio.create_task(consume())
                await publish(broker.port, *((f"ends/{n}", f"m{n}") for n in range(3)))
                await wait_until(lambda: len(got) == 3)
                assert not consumer.done()  # waiting for the next message
                broker.stop()
                stopped = True
                with pytest.raises(aiomqtt.MqttError, match="Disconnected"):
                    async with asyncio.timeout(10):
                        await consumer
        except aiomqtt.MqttError:
            pass  # leaving the context of a client whose broker is gone
        finally:
            close_socket(client)
        assert got == [b"m0", b"m1", b"m2"]
        assert lane.counters.taken == 3
    finally:
        if not stopped:
            broker.stop()


class _TlsLikeSocket:
    """A non-blocking TLS socket as paho sees it: a record, then nothing, with bytes that TLS
    has decrypted but not returned yet."""

    def __init__(self, records: list[bytes], decrypted: int) -> None:
        self.records = records
        self.decrypted = decrypted

    def recv(self, size: int) -> bytes:
        if not self.records:
            raise BlockingIOError
        return self.records.pop(0)[:size]

    def pending(self) -> int:
        return self.decrypted


def test_a_buffered_socket_serves_small_reads_and_counts_what_is_pending_exactly() -> None:
    # aiomqtt reads on while pending() > 0: over TLS, an under-count would leave decrypted
    # bytes unread with nothing left to wake the reader.
    inner = _TlsLikeSocket([bytes(range(100))], decrypted=5)
    sock = _BufferedSocket(inner)
    assert sock.recv(1) == b"\x00" and sock.recv(1) == b"\x01"
    assert sock.pending() == 98 + 5
    assert sock.recv(200) == bytes(range(2, 100))  # the rest of the chunk, not beyond
    assert sock.pending() == 5
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    assert sock.pending() == 5


@pytest.mark.mosquitto
async def test_a_lingering_lane_takes_a_stream_in_batches_and_acknowledges_only_what_it_took(
        tmp_path: Path) -> None:
    # The broker's in-flight window is 5: unacknowledged, no sixth message comes, lingering
    # or not. Taken, the rest follow, a window per read.
    broker = Mosquitto(tmp_path, extra_conf="max_inflight_messages 5\n")
    broker.start()
    try:
        cfg = site_config(broker.port, []).brokers["local"]
        lane, client = await _telemetry_lane(cfg, "stream", capacity=100, linger=0.02)
        total = 60
        try:
            async with client:
                await client.subscribe("stream/#", qos=1)
                await publish(broker.port, *((f"stream/{n}", f"m{n}") for n in range(total)))
                await wait_until(lambda: lane.waiting == 5)
                for _ in range(10):  # several lingers: still nothing more without an ack
                    await asyncio.sleep(0.02)
                assert lane.waiting == 5 and lane.counters.taken == 0
                got: list[bytes] = []
                async for message in lane.messages(client):
                    assert isinstance(message.payload, bytes)
                    got.append(message.payload)
                    lane.taken(client, message)
                    if len(got) == total:
                        break
        finally:
            close_socket(client)
        assert got == [f"m{n}".encode() for n in range(total)]
        assert lane.counters.taken == total and lane.counters.shed == 0
    finally:
        broker.stop()


@pytest.mark.mosquitto
async def test_a_lingering_lane_reads_what_arrives_after_a_read_a_linger_later_at_once(
        mosquitto: Mosquitto) -> None:
    cfg = site_config(mosquitto.port, []).brokers["local"]
    lane, client = await _telemetry_lane(cfg, "linger", capacity=100, linger=2.0)
    got: list[bytes] = []
    try:
        async with client:
            await client.subscribe("linger/#", qos=1)
            counting = _CountingSocket.under(client)

            async def consume() -> None:
                async for message in lane.messages(client):
                    assert isinstance(message.payload, bytes)
                    got.append(message.payload)
                    lane.taken(client, message)

            async with asyncio.TaskGroup() as tg:
                consumer = tg.create_task(consume())
                await publish(mosquitto.port, ("linger/0", "m0"))  # after a quiet spell: at once
                await wait_until(lambda: got == [b"m0"])
                reads = counting.reads
                await publish(mosquitto.port, *((f"linger/{n}", f"m{n}") for n in range(1, 5)))
                # Arrived, and left in the socket: the lane read m0 less than 2 s ago.
                size = sum(2 + 2 + len(f"linger/{n}") + 2 + len(f"m{n}") for n in range(1, 5))
                await wait_until(lambda: _waiting_bytes(counting.sock) == size)
                assert got == [b"m0"] and lane.waiting == 0
                await wait_until(lambda: len(got) == 5)  # one read, a linger after m0
                assert counting.reads == reads + 1
                consumer.cancel()
    finally:
        close_socket(client)
    assert got == [f"m{n}".encode() for n in range(5)]


@pytest.mark.mosquitto
async def test_life_safety_messages_do_not_wait_for_the_telemetry_linger(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    fire = {"id": "FP1", "driver": "mqtt", "kind": "fire_panel",
            "points": [{"name": "fire", "topic": "fp/1/fire"}]}
    meter = {"id": "M1", "driver": "mqtt", "kind": "meter",
             "points": [{"name": "kwh", "topic": "m/1/kwh"}]}
    # No $SYS subscription: the meter's message is the telemetry lane's first.
    config = site_config(mosquitto.port, [fire, meter], read_linger="50ms",
                         broker_drops=False).model_copy(
        update={"rules": load_config_text(SITE).rules[:1]})
    driver = only_driver(config, fake_clock)
    telemetry, safety = driver.lanes
    assert (telemetry.linger, safety.linger) == (0.05, 0.0)
    # Longer than the test: once the telemetry lane has read a message, the next one waits.
    telemetry.linger = 60.0
    sink = Sink()
    async with running(driver, sink, subscribed=2):
        await publish(mosquitto.port, ("m/1/kwh", "1"), ("fp/1/fire", "false"))
        await wait_until(lambda: telemetry.counters.taken == 1 and safety.counters.taken == 1)
        # Published in this order: the fire message overtakes the lingering meter reading.
        await publish(mosquitto.port, ("m/1/kwh", "2"), ("fp/1/fire", "true"))
        await sink.wait_for(lambda r: r.point == "fire" and r.value is True)
        assert safety.counters.taken == 2
        assert telemetry.counters.taken == 1
        assert [r.value for r in sink.readings if r.point == "kwh"] == [1]
