"""One task per Modbus connection: it owns the client and polls every device on it.

A TCP endpoint (often a gateway in front of many units) or an RS-485 bus carries one request
at a time, so one task owns the connection and serialises everything on it; there is no lock to
hold across retries, hence no fairness trap: pymodbus does not serialise calls from several
tasks, and a lock held across its retry loop lets one dead slave keep the bus through all its
retries (pymodbus issues #1606, #2432). Devices are scheduled by a min-heap of next-due times on
the injected clock, so each keeps its own ``poll_interval``.

A device that stops answering costs its neighbours at most one ``timeout`` per poll of it: the
first unanswered block ends that device's cycle, and it is then polled at a backed-off period
(without immediate retries) until it answers again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from drivers.base import LinkHealth, ReadingSink
from drivers.modbus._codec import decode_point
from drivers.modbus._guard import (
    ModbusClient,
    guarded_close,
    guarded_connect,
    guarded_read,
    survive_undecodable_answers,
)
from drivers.modbus._plan import ReadBlock, plan_device, silent_interval
from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import ModbusPoint, ModbusRtuDevice, ModbusTcpDevice
from gateway.errors import (
    DecodeError,
    DeviceError,
    DeviceRejected,
    DeviceTimeout,
    LinkError,
)
from gateway.histogram import Histogram
from gateway.model import Quality, Reading

__all__ = ["ClientFactory", "ModbusDevice", "ModbusLink", "silent_interval"]

log = logging.getLogger(__name__)

ModbusDevice = ModbusTcpDevice | ModbusRtuDevice
#: Builds a fresh, unconnected client; called inside the running loop for each connection.
ClientFactory = Callable[[], ModbusClient]

#: Exception codes by which a Modbus TCP gateway says the unit behind it did not answer
#: (application protocol v1.1b3 §7, codes 0x0A/0x0B): a comm loss, not a bad value.
_NO_ANSWER_CODES = frozenset({10, 11})
_FAILED = frozenset({"comm-loss", "bad"})


@dataclass(eq=False)
class _Device:
    cfg: ModbusDevice
    blocks: list[ReadBlock]
    backoff: Backoff
    state: str = "starting"
    #: clock.monotonic() of the device's last answer (or of the link's start): comm-loss
    #: readings say the device has been silent since then.
    last_answer: float | None = None

    @property
    def points(self) -> list[ModbusPoint]:
        return [p for b in self.blocks for p in b.points]


class ModbusLink:
    """Owns one Modbus connection (TCP endpoint or serial port) and polls its devices.

    Implements the :class:`~drivers.base.Driver` protocol. Not reentrant: run it once at a
    time; it may be run again after the previous run ended.

    Failures and their readings:

    * no answer (timeout, bad CRC, gateway exception 10/11): COMM_LOSS for the block and the
      device's remaining blocks this cycle; the device is then probed at a backed-off period
      (``max(poll_interval, timeout)`` doubling up to ``max_backoff``) without retries;
    * an exception code or an answer that does not fit (or does not decode at all): BAD for
      that block only; the device answered promptly, so its other blocks are still read, its
      period is kept, and the connection stays up for its neighbours;
    * the connection: COMM_LOSS for every point on the link, reconnect with ``reconnect``.

    :meth:`health` states: link ``starting``/``connecting``/``connected``/``disconnected``/
    ``stopped``; device ``starting``/``ok``/``bad``/``comm-loss``/``link-down``.

    Args:
        devices: The devices sharing the connection: all ``ModbusTcpDevice`` with the same
            host and port, or all ``ModbusRtuDevice`` on the same serial port.
        clock: Time source for scheduling, back-off and timestamps.
        reconnect: Back-off policy between connection attempts. Default: 0.5 s doubling up
            to the largest ``max_backoff`` of the devices.
        client_factory: Builds the pymodbus client; for unit tests with a fake client.

    Raises:
        ValueError: The devices do not share one connection, or an RTU device uses unit 0
            (broadcast: reads are never answered) or shares its unit id with another.
    """

    def __init__(
        self,
        devices: Sequence[ModbusDevice],
        clock: Clock,
        *,
        reconnect: Backoff | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if not devices:
            raise ValueError("a Modbus link needs at least one device")
        self._name = _check_one_connection(devices)
        self._clock = clock
        self._devices = [
            _Device(cfg=d, blocks=plan_device(d), backoff=_device_backoff(d)) for d in devices
        ]
        timeouts = [d.timeout for d in devices]
        #: No config key for it; the slowest device's request deadline is a fair bound.
        self._connect_timeout = max(timeouts)
        self._reconnect = reconnect or Backoff(base=0.5,
                                               cap=max(0.5, *(d.max_backoff for d in devices)))
        first = devices[0]
        self._gap = 0.0
        if isinstance(first, ModbusRtuDevice):
            explicit = [d.inter_frame_delay for d in devices
                        if isinstance(d, ModbusRtuDevice) and d.inter_frame_delay is not None]
            self._gap = max(explicit) if explicit else silent_interval(first.baudrate)
        self._client_factory = client_factory or self._pymodbus_client
        self._quiet_since = -math.inf
        self._link_failed = False
        self._running = False
        self._health = LinkHealth(link=self._name,
                                  devices={d.id: "starting" for d in devices})
        #: Time from sending a read request to its answer (data, an exception code or an
        #: undecodable frame), on the link's clock; timeouts are counted, not observed.
        self.request_latency = Histogram()

    @property
    def name(self) -> str:
        """``modbus[host:port]`` or ``modbus[/dev/ttyUSB0]``."""
        return self._name

    @property
    def inter_frame_delay(self) -> float:
        """Silence kept between frames, in seconds (0 on TCP)."""
        return self._gap

    @property
    def device_ids(self) -> list[str]:
        """Ids of the devices on this link, in config order."""
        return [d.cfg.id for d in self._devices]

    def plan(self, device_id: str) -> list[ReadBlock]:
        """The coalesced reads of one device (for diagnostics and tests)."""
        for dev in self._devices:
            if dev.cfg.id == device_id:
                return list(dev.blocks)
        raise KeyError(device_id)

    def health(self) -> LinkHealth:
        """Live health of the link: state, last error, counters, per-device state."""
        return self._health

    async def run(self, sink: ReadingSink) -> None:
        """Connect, poll every device and push readings into ``sink`` until cancelled.

        Device failures become COMM_LOSS/BAD readings; a lost connection makes every point
        COMM_LOSS and is retried with back-off. Only cancellation (or a bug) ends it.

        Args:
            sink: Awaited once per block read (or failed); a slow sink slows polling
                (back-pressure).

        Raises:
            RuntimeError: The link is already running.
            asyncio.CancelledError: When cancelled; the client is closed first.
        """
        if self._running:
            raise RuntimeError(f"{self._name} is already running")
        self._running = True
        started = self._clock.monotonic()
        for dev in self._devices:
            if dev.last_answer is None:
                dev.last_answer = started
        try:
            if not any(d.blocks for d in self._devices):
                log.info("%s: no points configured, nothing to poll", self._name)
                await asyncio.get_running_loop().create_future()  # until cancelled
            while True:
                await self._connection(sink)
                await self._clock.sleep(self._reconnect.next_delay())
        finally:
            self._running = False
            self._health.state = "stopped"

    # -- one connection

    async def _connection(self, sink: ReadingSink) -> None:
        """Connect, then poll until the link fails; closes the client however it ends."""
        client = self._client_factory()
        try:
            self._health.state = "connecting"
            await guarded_connect(client, link=self._name,
                                  connect_timeout=self._connect_timeout)
            self._health.count("connects")
            self._health.state = "connected"
            self._health.last_error = None
            if self._link_failed:
                log.info("%s: connected again", self._name)
            else:
                log.debug("%s: connected", self._name)
            self._link_failed = False
            await self._poll_forever(client, sink)
        except LinkError as exc:
            self._health.state = "disconnected"
            self._health.last_error = str(exc)
            self._health.count("link_errors")
            if self._link_failed:
                log.debug("%s: still down: %s", self._name, exc)
            else:
                log.warning("%s: link down, every point is comm-loss: %s", self._name, exc)
            self._link_failed = True
            await self._link_down(sink, str(exc))
        finally:
            guarded_close(client, link=self._name)

    async def _poll_forever(self, client: ModbusClient, sink: ReadingSink) -> None:
        seq = itertools.count()
        now = self._clock.monotonic()
        heap: list[tuple[float, int, int]] = []
        for i, dev in enumerate(self._devices):
            if dev.blocks:
                dev.backoff.reset()
                heap.append((now, next(seq), i))
        heapq.heapify(heap)
        while True:
            due, _, i = heapq.heappop(heap)
            if due > self._clock.monotonic():
                await self._clock.sleep_until(due)
            dev = self._devices[i]
            await self._poll_device(client, dev, sink)
            heapq.heappush(heap, (self._next_due(dev, due), next(seq), i))

    def _next_due(self, dev: _Device, due: float) -> float:
        now = self._clock.monotonic()
        if dev.state == "comm-loss":
            return now + dev.backoff.next_delay()
        interval = dev.cfg.poll_interval
        nxt = due + interval
        if nxt <= now:
            # The cycle overran: skip the missed slots instead of polling back to back.
            missed = math.floor((now - due) / interval)
            self._health.count("overruns", missed)
            nxt = max(due + (missed + 1) * interval, now)
        return nxt

    # -- one device

    async def _poll_device(self, client: ModbusClient, dev: _Device,
                           sink: ReadingSink) -> None:
        # A device already known dead gets one probe, not retries: its neighbours wait.
        retries = 0 if dev.state == "comm-loss" else dev.cfg.retries
        outcome, problem = "ok", ""
        for i, block in enumerate(dev.blocks):
            try:
                data = await self._request(client, dev, block, retries)
            except DeviceError as exc:
                reason = f"{block.table} {block.address}: {exc.args[0]}"
                problem = problem or reason
                if _quality_of(exc) is Quality.COMM_LOSS:
                    # Skip the rest of this device's blocks: one timeout per cycle at most.
                    skipped = [p for b in dev.blocks[i:] for p in b.points]
                    await self._emit_failed(sink, dev, skipped, Quality.COMM_LOSS, reason)
                    outcome, problem = "comm-loss", reason
                    break
                # It answered promptly: the other blocks are still worth reading.
                dev.last_answer = self._clock.monotonic()
                await self._emit_failed(sink, dev, block.points, Quality.BAD, reason)
                outcome = "bad"
                continue
            self._reconnect.reset()
            dev.last_answer = self._clock.monotonic()
            await self._emit_block(sink, dev, block, data)
        self._settle(dev, outcome, problem)

    async def _request(self, client: ModbusClient, dev: _Device, block: ReadBlock,
                       retries: int) -> list[int] | list[bool]:
        attempt = 0
        while True:
            if self._gap > 0:
                await self._clock.sleep_until(self._quiet_since + self._gap)
            self._health.count("requests")
            sent = self._clock.monotonic()
            try:
                data = await guarded_read(client, dev.cfg, block.table, block.address,
                                          block.count, link=self._name)
            except (DeviceTimeout, DecodeError) as exc:
                if isinstance(exc, DeviceTimeout):
                    self._health.count("timeouts")
                else:
                    self._health.count("decode_errors")
                    self._answered(sent)
                if attempt >= retries:
                    raise
                attempt += 1
                self._health.count("retries")
                log.debug("%s: retry %d/%d after: %s", self._name, attempt, retries, exc)
            except DeviceRejected:
                self._health.count("rejected")
                self._answered(sent)
                raise
            else:
                self._answered(sent)
                return data
            finally:
                self._quiet_since = self._clock.monotonic()

    def _answered(self, sent: float) -> None:
        self.request_latency.observe(self._clock.monotonic() - sent)

    async def _emit_block(self, sink: ReadingSink, dev: _Device, block: ReadBlock,
                          data: list[int] | list[bool]) -> None:
        ts = self._clock.time()
        readings: list[Reading] = []
        for point in block.points:
            try:
                value = decode_point(point, block.slice_for(point, data), device=dev.cfg.id)
            except DecodeError as exc:
                self._health.count("decode_errors")
                log.debug("%s: %s", self._name, exc)
                reading = Reading(device=dev.cfg.id, point=point.name, value=None,
                                  quality=Quality.BAD, received_ts=ts, error=exc.args[0])
            else:
                reading = Reading(device=dev.cfg.id, point=point.name, value=value,
                                  quality=Quality.GOOD, received_ts=ts)
            readings.append(reading)
        await sink(readings)  # one batch per block: one bus operation, derived points once
        self._health.count("readings", len(block.points))

    async def _emit_failed(self, sink: ReadingSink, dev: _Device,
                           points: Sequence[ModbusPoint],
                           quality: Quality, error: str) -> None:
        ts = self._clock.time()
        silent_since = None
        if quality is Quality.COMM_LOSS and dev.last_answer is not None:
            silent_since = ts - max(0.0, self._clock.monotonic() - dev.last_answer)
        await sink([Reading(device=dev.cfg.id, point=point.name, value=None, quality=quality,
                            received_ts=ts, error=error, silent_since=silent_since)
                    for point in points])
        self._health.count("readings", len(points))

    def _settle(self, dev: _Device, outcome: str, problem: str) -> None:
        """Record a device's cycle outcome; log only on transitions."""
        previous, dev.state = dev.state, outcome
        self._health.devices[dev.cfg.id] = outcome
        if outcome == "ok":
            dev.backoff.reset()
            if previous in _FAILED:
                log.info("%s: device %s recovered", self._name, dev.cfg.id)
            return
        if previous in _FAILED:
            log.debug("%s: device %s still %s: %s", self._name, dev.cfg.id, outcome, problem)
        else:
            log.warning("%s: device %s is %s: %s", self._name, dev.cfg.id, outcome, problem)

    async def _link_down(self, sink: ReadingSink, error: str) -> None:
        for dev in self._devices:
            dev.state = "link-down"
            self._health.devices[dev.cfg.id] = "link-down"
            await self._emit_failed(sink, dev, dev.points, Quality.COMM_LOSS, error)

    # -- pymodbus

    def _pymodbus_client(self) -> ModbusClient:
        # retries=0 and reconnect_delay=0: the only retry and reconnect policy is ours
        # (pymodbus otherwise reconnects with its own backoff, and closes the connection itself
        # after retries+3 unanswered requests). pymodbus's own deadline is kept well beyond
        # ours so that it never fires first, and so never counts towards closing the connection
        # by itself.
        timeout = 2 * self._connect_timeout + 1
        cfg = self._devices[0].cfg
        client: AsyncModbusSerialClient | AsyncModbusTcpClient
        if isinstance(cfg, ModbusRtuDevice):
            client = AsyncModbusSerialClient(
                cfg.port, framer=FramerType.RTU, baudrate=cfg.baudrate, parity=cfg.parity,
                bytesize=cfg.bytesize, stopbits=cfg.stopbits, timeout=timeout, retries=0,
                reconnect_delay=0, name=self._name)
        else:
            client = AsyncModbusTcpClient(cfg.host, port=cfg.port, timeout=timeout, retries=0,
                                          reconnect_delay=0, name=self._name)
        survive_undecodable_answers(client)
        return client


def _quality_of(exc: DeviceError) -> Quality:
    if isinstance(exc, DeviceTimeout):
        return Quality.COMM_LOSS
    if isinstance(exc, DeviceRejected) and exc.code in _NO_ANSWER_CODES:
        return Quality.COMM_LOSS
    return Quality.BAD


def _device_backoff(dev: ModbusDevice) -> Backoff:
    # Start no faster than one timeout per period: a dead device may then hold the
    # connection at most half the time, and less with every further miss.
    base = max(dev.poll_interval, dev.timeout)
    return Backoff(base=base, cap=max(base, dev.max_backoff))


def _check_one_connection(devices: Sequence[ModbusDevice]) -> str:
    """Return the link name; raise ValueError unless all devices share one connection."""
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids):
        raise ValueError(f"device ids on one link must be unique, got {ids}")
    first = devices[0]
    if isinstance(first, ModbusTcpDevice):
        for d in devices:
            if not isinstance(d, ModbusTcpDevice) or (d.host, d.port) != (first.host,
                                                                          first.port):
                raise ValueError(f"device {d.id} is not on {first.host}:{first.port} "
                                 f"(device {first.id})")
        return f"modbus[{first.host}:{first.port}]"
    units: dict[int, str] = {}
    for d in devices:
        if not isinstance(d, ModbusRtuDevice) or d.port != first.port:
            raise ValueError(f"device {d.id} is not on serial port {first.port} "
                             f"(device {first.id})")
        if d.serial_settings != first.serial_settings:
            raise ValueError(f"device {d.id}: serial settings {d.serial_settings} differ from "
                             f"device {first.id} {first.serial_settings} on {first.port}")
        if d.unit == 0:
            raise ValueError(f"device {d.id}: unit 0 is the RTU broadcast address; reads to "
                             f"it are never answered")
        if d.unit in units:
            raise ValueError(f"device {d.id}: unit {d.unit} on {first.port} is already used "
                             f"by device {units[d.unit]}")
        units[d.unit] = d.id
    return f"modbus[{first.port}]"
