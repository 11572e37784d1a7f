"""Tier (a): poll scheduling, back-off, retries, reconnects and the guard, on a fake clock.

The link talks to a small fake client here (allowed in unit tests only); everything that
needs a real wire is in test_modbus_link.py and test_modbus_rtu.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException

from drivers.modbus import (
    ModbusLink,
    build_modbus_links,
    describe_polling,
    guarded_connect,
    guarded_read,
    silent_interval,
)
from gateway.backoff import Backoff
from gateway.clock import FakeClock
from gateway.config import DeviceConfig, MqttDevice
from gateway.errors import DecodeError, DeviceRejected, DeviceTimeout, LinkError
from gateway.model import Quality
from simulators.encoding import encode
from tests.test_modbus_support import Collector, point, rtu_device, running, tcp_device

START = 1000.0  # FakeClock's default start
LINK_LOG = "drivers.modbus._link"


# --------------------------------------------------------------------------- the fake


@dataclass
class FakeResponse:
    function_code: int
    registers: Sequence[int] = ()
    bits: Sequence[bool] = ()
    exception_code: int = 0

    def isError(self) -> bool:
        return self.function_code > 0x80


@dataclass
class FakeUnit:
    registers: dict[int, int] = field(default_factory=dict)
    silent: bool = False
    #: block start address -> Modbus exception code answered for reads starting there
    exception_at: dict[int, int] = field(default_factory=dict)
    response_time: float = 0.0


class FakeBus:
    """Units behind one fake connection; survives reconnects (a new client each time)."""

    def __init__(self, clock: FakeClock, units: dict[int, FakeUnit], *,
                 no_answer_after: float = 0.5) -> None:
        self.clock = clock
        self.units = units
        self.no_answer_after = no_answer_after  # fake seconds a silent unit costs
        self.up = True
        self.calls: list[tuple[float, int, int, int, int]] = []
        self.connect_times: list[float] = []
        self.clients: list[FakeClient] = []

    def factory(self) -> FakeClient:
        client = FakeClient(self)
        self.clients.append(client)
        return client

    def call_times(self, unit: int) -> list[float]:
        return [t for t, u, *_ in self.calls if u == unit]


class FakeClient:
    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.open = False
        self.closed = False

    @property
    def connected(self) -> bool:
        return self.open and self.bus.up

    async def connect(self) -> bool:
        self.bus.connect_times.append(self.bus.clock.monotonic())
        self.open = self.bus.up
        return self.open

    def close(self) -> None:
        self.open = False
        self.closed = True

    def read_coils(self, address: int, *, count: int = 1, device_id: int = 1,
                   no_response_expected: bool = False) -> Coroutine[Any, Any, FakeResponse]:
        return self._read(1, address, count, device_id)

    def read_discrete_inputs(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False
                             ) -> Coroutine[Any, Any, FakeResponse]:
        return self._read(2, address, count, device_id)

    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                               no_response_expected: bool = False
                               ) -> Coroutine[Any, Any, FakeResponse]:
        return self._read(3, address, count, device_id)

    def read_input_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False
                             ) -> Coroutine[Any, Any, FakeResponse]:
        return self._read(4, address, count, device_id)

    async def _read(self, fc: int, address: int, count: int, unit_id: int) -> FakeResponse:
        if not self.connected:
            raise ConnectionException("Not connected")
        bus = self.bus
        bus.calls.append((bus.clock.monotonic(), unit_id, fc, address, count))
        unit = bus.units.get(unit_id)
        if unit is None or unit.silent:
            await bus.clock.sleep(bus.no_answer_after)
            raise ModbusIOException("No response received after 0 retries")
        if unit.response_time:
            await bus.clock.sleep(unit.response_time)
        if address in unit.exception_at:
            return FakeResponse(fc | 0x80, exception_code=unit.exception_at[address])
        if fc in (1, 2):
            return FakeResponse(fc, bits=[False] * count)
        return FakeResponse(fc, registers=[unit.registers.get(address + i, 0)
                                           for i in range(count)])


def _intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _link_messages(caplog: pytest.LogCaptureFixture, level: int, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LINK_LOG and r.levelno == level and needle in r.getMessage()]


# --------------------------------------------------------------------------- scheduling


async def test_each_device_keeps_its_own_poll_interval(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit(), 2: FakeUnit()})
    fast = tcp_device("fast", 502, [point("x", 0)], unit=1, poll_interval=1.0)
    slow = tcp_device("slow", 502, [point("y", 0)], unit=2, poll_interval=2.5)
    link = ModbusLink([fast, slow], fake_clock, client_factory=bus.factory)
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(10)
        # Idle between polls means exactly one timer and nothing else (no busy waiting).
        assert fake_clock.pending == 1
    assert bus.call_times(1) == pytest.approx([START + i for i in range(11)])
    assert bus.call_times(2) == pytest.approx([START + 2.5 * i for i in range(5)])
    assert len(bus.connect_times) == 1
    assert all(r.good for r in sink.readings)
    assert bus.clients[-1].closed


async def test_an_overrunning_device_skips_missed_slots(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit(response_time=2.5)})
    dev = tcp_device("slow", 502, [point("x", 0)], poll_interval=1.0, timeout=3)
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory)
    async with running(link, Collector()):
        await fake_clock.advance(9.5)
    assert bus.call_times(1) == pytest.approx([START, START + 3, START + 6, START + 9])
    assert link.health().counters["overruns"] == 6


async def test_a_silent_device_backs_off_and_its_neighbour_keeps_pace(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    bus = FakeBus(fake_clock, {1: FakeUnit(silent=True), 2: FakeUnit()}, no_answer_after=0.5)
    dead = tcp_device("dead", 502, [point("x", 0), point("y", 50), point("z", 100)],
                      unit=1, poll_interval=1.0, timeout=0.5, max_backoff=8, max_gap=0)
    alive = tcp_device("alive", 502, [point("v", 0)], unit=2, poll_interval=1.0)
    link = ModbusLink([dead, alive], fake_clock, client_factory=bus.factory)
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(40)
        dead_calls = bus.call_times(1)
        # One request per cycle: the first unanswered block ends the dead device's cycle.
        assert {a for _, u, _, a, _ in bus.calls if u == 1} == {0}
        waits = [gap - 0.5 for gap in _intervals(dead_calls)]
        expected = [1, 2, 4, 8, 8, 8]
        assert len(waits) >= len(expected)
        for wait, nominal in zip(waits, expected, strict=False):
            assert 0.8 * nominal <= wait <= 1.2 * nominal + 1e-9, waits
        alive_calls = bus.call_times(2)
        assert len(alive_calls) >= 40
        assert max(_intervals(alive_calls)) <= 1.0 + 0.5 + 1e-9  # at most one timeout
        for name in ("x", "y", "z"):
            last = sink.latest("dead", name)
            assert last is not None
            assert last.quality is Quality.COMM_LOSS
            assert last.value is None
            assert last.error is not None
            assert last.error.startswith("holding 0: no valid answer")
        assert link.health().devices == {"dead": "comm-loss", "alive": "ok"}

        bus.units[1].silent = False
        await fake_clock.advance(10)  # the longest back-off is 8 s +20 %
        assert sink.latest_all("dead", ["x", "y", "z"], Quality.GOOD)
        before = len(bus.calls)
        await fake_clock.advance(5)
        recovered = [t for t, u, _, a, _ in bus.calls[before:] if u == 1 and a == 0]
        assert len(recovered) == 5
        assert _intervals(recovered) == pytest.approx([1.0] * 4)  # back-off was reset

    assert len(_link_messages(caplog, logging.WARNING, "device dead")) == 1
    assert len(_link_messages(caplog, logging.DEBUG, "device dead still comm-loss")) >= 4
    assert len(_link_messages(caplog, logging.INFO, "device dead recovered")) == 1
    assert not _link_messages(caplog, logging.WARNING, "alive")


async def test_retries_apply_only_while_the_device_is_healthy(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit(silent=True)}, no_answer_after=0.5)
    dev = tcp_device("d", 502, [point("x", 0)], retries=2, timeout=0.5, poll_interval=1.0)
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory)
    async with running(link, Collector()):
        await fake_clock.advance(1.6)
        assert bus.call_times(1) == pytest.approx([START, START + 0.5, START + 1.0])
        await fake_clock.advance(10)
    gaps = _intervals(bus.call_times(1)[2:])
    assert gaps
    assert all(g > 1.0 for g in gaps)  # single probes, backed off
    assert link.health().counters["retries"] == 2


async def test_an_exception_code_is_bad_quality_and_other_blocks_still_read(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    bus = FakeBus(fake_clock, {1: FakeUnit(registers={0: 7}, exception_at={50: 2})})
    dev = tcp_device("d", 502, [point("ok", 0), point("missing", 50)], max_gap=0,
                     poll_interval=1.0)
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory)
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(3)
    ok, missing = sink.latest("d", "ok"), sink.latest("d", "missing")
    assert ok is not None
    assert ok.quality is Quality.GOOD
    assert ok.value == 7
    assert missing is not None
    assert missing.quality is Quality.BAD
    assert missing.error == "holding 50: exception code 2 (illegal data address)"
    # The device answers promptly, so it keeps its poll period.
    assert _intervals(bus.call_times(1)[::2]) == pytest.approx([1.0, 1.0, 1.0])
    assert link.health().devices["d"] == "bad"
    assert len(_link_messages(caplog, logging.WARNING, "device d is bad")) == 1


async def test_gateway_target_failed_to_respond_is_comm_loss(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit(exception_at={0: 11})})
    dev = tcp_device("behind-gw", 502, [point("x", 0)], poll_interval=1.0)
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory)
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(5)
    last = sink.latest("behind-gw", "x")
    assert last is not None
    assert last.quality is Quality.COMM_LOSS
    assert "exception code 11" in (last.error or "")
    assert len(bus.call_times(1)) < 5  # backed off like a silent device


async def test_an_undecodable_value_is_bad_and_its_neighbours_good(
        fake_clock: FakeClock) -> None:
    nan = encode(math.nan, "float32")
    bus = FakeBus(fake_clock, {1: FakeUnit(registers={0: nan[0], 1: nan[1], 2: 5})})
    dev = tcp_device("d", 502, [point("f", 0, type="float32"), point("n", 2)])
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory)
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(0)
    f, n = sink.latest("d", "f"), sink.latest("d", "n")
    assert f is not None
    assert f.quality is Quality.BAD
    assert "nan" in (f.error or "")
    assert n is not None
    assert n.good
    assert n.value == 5


# --------------------------------------------------------------------------- the link


async def test_link_down_marks_every_point_and_reconnects_with_backoff(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus")
    bus = FakeBus(fake_clock, {1: FakeUnit(registers={0: 1}), 2: FakeUnit(registers={0: 2})})
    bus.up = False
    devs = [tcp_device("a", 502, [point("x", 0)], unit=1),
            tcp_device("b", 502, [point("y", 0), point("z", 1)], unit=2)]
    link = ModbusLink(devs, fake_clock, client_factory=bus.factory,
                      reconnect=Backoff(base=1, cap=4, jitter=0))
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(11.5)
        assert bus.connect_times == pytest.approx(
            [START, START + 1, START + 3, START + 7, START + 11])
        assert len(sink.readings) == 5 * 3
        assert all(r.quality is Quality.COMM_LOSS for r in sink.readings)
        assert link.health().state == "disconnected"
        assert link.health().devices == {"a": "link-down", "b": "link-down"}
        bus.up = True
        await fake_clock.advance(4)  # next attempt at +15
        assert sink.latest_all("b", ["y", "z"], Quality.GOOD)
        assert link.health().state == "connected"
    assert all(c.closed for c in bus.clients)
    assert len(_link_messages(caplog, logging.WARNING, "link down")) == 1
    assert len(_link_messages(caplog, logging.DEBUG, "still down")) == 4
    assert len(_link_messages(caplog, logging.INFO, "connected again")) == 1


async def test_connection_lost_while_polling(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit()})
    dev = tcp_device("a", 502, [point("x", 0)], poll_interval=1.0)
    link = ModbusLink([dev], fake_clock, client_factory=bus.factory,
                      reconnect=Backoff(base=2, cap=2, jitter=0))
    sink = Collector(now=fake_clock.monotonic)
    async with running(link, sink):
        await fake_clock.advance(1.5)
        bus.up = False
        await fake_clock.advance(1)
        last = sink.latest("a", "x")
        assert last is not None
        assert last.quality is Quality.COMM_LOSS
        assert "not connected" in (last.error or "")
        bus.up = True
        await fake_clock.advance(2)
        assert sink.latest_all("a", ["x"], Quality.GOOD)
    assert len(bus.clients) == 2
    assert all(c.closed for c in bus.clients)


async def test_rtu_keeps_the_silent_interval_between_frames(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit(), 2: FakeUnit()})
    devs = [rtu_device(f"m{u}", "/dev/fake", [point("a", 0), point("b", 40)], unit=u,
                       baudrate=9600, max_gap=0) for u in (1, 2)]
    link = ModbusLink(devs, fake_clock, client_factory=bus.factory)
    assert link.name == "modbus[/dev/fake]"
    gap = 3.5 * 11 / 9600
    assert link.inter_frame_delay == pytest.approx(gap)
    async with running(link, Collector()):
        await fake_clock.advance(0.1)
    times = [t for t, *_ in bus.calls]
    assert len(times) == 4
    assert _intervals(times) == pytest.approx([gap] * 3)


def test_silent_interval() -> None:
    assert silent_interval(9600) == pytest.approx(0.00401, abs=1e-5)
    assert silent_interval(19200) == pytest.approx(0.002, abs=1e-5)
    assert silent_interval(115200) == 0.00175
    explicit = [rtu_device("m", "/dev/x", [point("a", 0)], inter_frame_delay="20ms")]
    assert ModbusLink(explicit, FakeClock()).inter_frame_delay == pytest.approx(0.02)


async def test_cancel_closes_the_client_and_stays_cancelled(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit()})
    link = ModbusLink([tcp_device("a", 502, [point("x", 0)])], fake_clock,
                      client_factory=bus.factory)
    task = asyncio.create_task(link.run(Collector()))
    await fake_clock.advance(0.5)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert bus.clients[0].closed
    assert link.health().state == "stopped"


async def test_a_link_without_points_just_waits(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {})
    link = ModbusLink([tcp_device("a", 502, [])], fake_clock, client_factory=bus.factory)
    task = asyncio.create_task(link.run(Collector()))
    await fake_clock.advance(100)
    assert fake_clock.pending == 0
    assert not bus.clients
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()


async def test_a_link_runs_once_at_a_time(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {1: FakeUnit()})
    link = ModbusLink([tcp_device("a", 502, [point("x", 0)])], fake_clock,
                      client_factory=bus.factory)
    async with running(link, Collector()):
        await fake_clock.advance(0)
        with pytest.raises(RuntimeError, match="already running"):
            await link.run(Collector())


# --------------------------------------------------------------------------- construction


def test_link_rejects_devices_that_do_not_share_a_connection() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"not on 127\.0\.0\.1:502"):
        ModbusLink([tcp_device("a", 502, []), tcp_device("b", 503, [])], clock)
    with pytest.raises(ValueError, match="not on serial port"):
        ModbusLink([rtu_device("a", "/dev/x", []), tcp_device("b", 503, [])], clock)
    with pytest.raises(ValueError, match="broadcast"):
        ModbusLink([rtu_device("a", "/dev/x", [], unit=0)], clock)
    with pytest.raises(ValueError, match="already used"):
        ModbusLink([rtu_device("a", "/dev/x", []), rtu_device("b", "/dev/x", [])], clock)
    with pytest.raises(ValueError, match="serial settings"):
        ModbusLink([rtu_device("a", "/dev/x", []),
                    rtu_device("b", "/dev/x", [], unit=2, baudrate=19200)], clock)
    with pytest.raises(ValueError, match="unique"):
        ModbusLink([tcp_device("a", 502, []), tcp_device("a", 502, [])], clock)


def test_build_groups_by_endpoint_and_port() -> None:
    devices: list[DeviceConfig] = [
        tcp_device("a", 502, [point("x", 0)]),
        rtu_device("m1", "/dev/ttyUSB0", [point("x", 0)], unit=1),
        tcp_device("b", 502, [point("x", 0)], unit=2),
        tcp_device("c", 503, [point("x", 0)]),
        rtu_device("m2", "/dev/ttyUSB0", [point("x", 0)], unit=2),
        tcp_device("off", 504, [point("x", 0)], enabled=False),
        MqttDevice.model_validate({"id": "door", "driver": "mqtt", "points": []}),
    ]
    links = build_modbus_links(devices, FakeClock())
    assert [(link.name, link.device_ids) for link in links] == [
        ("modbus[127.0.0.1:502]", ["a", "b"]),
        ("modbus[/dev/ttyUSB0]", ["m1", "m2"]),
        ("modbus[127.0.0.1:503]", ["c"]),
    ]
    lines = describe_polling(devices)
    assert len(lines) == 5
    assert lines[0] == ("modbus[127.0.0.1:502] a unit 1: every 1s, timeout 1s, "
                        "1 read(s): holding 0+1")
    assert lines[2].startswith("modbus[/dev/ttyUSB0] 9600 8N1 (t3.5 4.01 ms) m1 unit 1")


# --------------------------------------------------------------------------- the guard


class LegacyClient:
    """Hangs forever and turns cancellation into ModbusIOException, like pymodbus 3.15."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.connected = True

    async def connect(self) -> bool:
        return True

    def close(self) -> None:
        self.connected = False

    async def _hang(self) -> FakeResponse:
        self.started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            raise ModbusIOException("Request cancelled outside library.") from None
        raise AssertionError("unreachable")

    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                               no_response_expected: bool = False) -> object:
        return self._hang()

    read_coils = read_discrete_inputs = read_input_registers = read_holding_registers


async def test_guard_restores_cancellation_pymodbus_swallowed() -> None:
    client = LegacyClient()
    dev = tcp_device("d", 502, [], timeout=5)
    task = asyncio.create_task(guarded_read(client, dev, "holding", 0, 1,  # type: ignore[arg-type]
                                            link="l"))
    await client.started.wait()
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()


async def test_guard_outer_deadline_is_timeout_error_own_deadline_is_device_timeout() -> None:
    client = LegacyClient()
    dev = tcp_device("d", 502, [], timeout=5, unit=7)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await guarded_read(client, dev, "holding", 3, 1, link="l")  # type: ignore[arg-type]
    quick = tcp_device("d", 502, [], timeout=0.05, unit=7)
    with pytest.raises(DeviceTimeout) as err:
        await guarded_read(client, quick, "holding", 3, 1, link="l")  # type: ignore[arg-type]
    assert (err.value.device, err.value.unit, err.value.address) == ("d", 7, 3)
    assert str(err.value) == "device d, unit 7, address 3: no answer within 0.05s"


@pytest.mark.parametrize(("response", "error"), [
    (FakeResponse(0x83, exception_code=6), DeviceRejected),
    (FakeResponse(3, registers=[1]), DecodeError),
    (FakeResponse(4, registers=[1, 2]), DecodeError),
])
async def test_guard_maps_bad_answers(response: FakeResponse, error: type[Exception]) -> None:
    class Answering(LegacyClient):
        async def _hang(self) -> FakeResponse:
            return response

    dev = tcp_device("d", 502, [])
    with pytest.raises(error) as err:
        await guarded_read(Answering(), dev, "holding", 0, 2, link="l")  # type: ignore[arg-type]
    if isinstance(err.value, DeviceRejected):
        assert err.value.code == 6
        assert "server device busy" in str(err.value)


async def test_guard_maps_connection_failures(fake_clock: FakeClock) -> None:
    bus = FakeBus(fake_clock, {})
    bus.up = False
    client = bus.factory()
    with pytest.raises(LinkError, match="cannot connect"):
        await guarded_connect(client, link="modbus[x]", connect_timeout=1)
    with pytest.raises(LinkError, match="not connected"):
        await guarded_read(client, tcp_device("d", 502, []), "coil", 0, 1, link="modbus[x]")

    class Refusing(LegacyClient):
        async def connect(self) -> bool:
            raise ConnectionRefusedError("refused")

    with pytest.raises(LinkError, match="refused"):
        await guarded_connect(Refusing(), link="modbus[x]",  # type: ignore[arg-type]
                              connect_timeout=1)
