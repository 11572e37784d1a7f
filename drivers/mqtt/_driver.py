"""The MQTT southbound driver: one broker, every MQTT device on it, readings out.

Per broker, :class:`MqttDriver` runs two tasks in one TaskGroup:

* ``mqtt[<broker>].link``: the shared :class:`~gateway.mqtt_client.MqttSession` state machine.
  On every fresh connection it subscribes again (the broker forgets clean sessions, so a
  restart must never lose a subscription) and then decodes messages into readings.
* ``mqtt[<broker>].stale``: one watchdog for every device with ``stale_after``. It sleeps on the
  injected clock until the earliest deadline; the dispatcher wakes it early only when a device
  starts being watched with a deadline before the one it sleeps on.

Devices whose id has ``{placeholders}`` (filled from topic levels, or from payload fields with
``split_by``) become known when their first message arrives; devices
with a literal id are known from the start, so a fire panel that never says anything still
turns comm-loss when the broker is down or its ``stale_after`` passes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

import aiomqtt

from drivers.base import LinkHealth, ReadingSink
from drivers.mqtt._ids import DeviceIds, IdError
from drivers.mqtt._payload import Payload, PointDecoder
from drivers.mqtt._topics import TopicPattern
from gateway.aio import raise_if_cancelling, task_group
from gateway.clock import Clock
from gateway.config import BrokerConfig, MqttDevice
from gateway.errors import ConfigError, ConfigProblem, DecodeError
from gateway.model import Quality, Reading
from gateway.mqtt_client import LinkState, MqttSession

__all__ = ["MqttDriver"]

log = logging.getLogger(__name__)

#: After the first WARNING about a point's malformed payloads, at most one per this many seconds.
MALFORMED_LOG_INTERVAL = 60.0
_COUNTERS = ("messages", "readings", "malformed", "unmatched", "bad_topic", "bad_split",
             "subscribe_refused", "comm_loss")
# Filters per SUBSCRIBE packet: small enough for brokers that cap packet size.
_SUBSCRIBE_BATCH = 64


class _Status(enum.StrEnum):
    WAITING = "waiting"  # literal id, nothing received yet
    OK = "ok"
    COMM_LOSS = "comm-loss"


@dataclass(frozen=True, slots=True, eq=False)
class _Route:
    """The points of one configured device that share one topic template."""

    index: int  # position of the device among this driver's devices
    device: MqttDevice
    pattern: TopicPattern
    decoders: tuple[PointDecoder, ...]
    ids: DeviceIds  # shared by the device's routes


@dataclass(slots=True, eq=False)
class _Tracked:
    """A concrete device: a literal one, or a templated one seen at least once."""

    device_id: str
    cfg: MqttDevice
    last_seen: float  # clock.monotonic() of the last message (or of the driver's start)
    status: _Status
    lost_by_link: bool = False


@dataclass(slots=True)
class _LogLimit:
    last_warning: float
    suppressed: int = 0


class MqttDriver:
    """Reads every MQTT device of one broker.

    Args:
        broker_id: The broker's id in the config (``brokers:`` key).
        broker: The broker's config.
        devices: The enabled MQTT devices that use this broker.
        gateway_id: This gateway's id, for the default client id
            ``propgw-<gateway_id>-<broker_id>``.
        clock: Time source for timestamps, stale timers and reconnect backoff.
        tz: Time zone for device timestamps without an offset (the site's time zone).

    Raises:
        ValueError: ``devices`` is empty.
        ConfigError: A point's ``path`` or ``timestamp_path`` cannot be used.
    """

    def __init__(
        self,
        broker_id: str,
        broker: BrokerConfig,
        devices: Sequence[MqttDevice],
        *,
        gateway_id: str,
        clock: Clock,
        tz: tzinfo = UTC,
    ) -> None:
        if not devices:
            raise ValueError(f"mqtt[{broker_id}]: a driver needs at least one device")
        self.broker_id = broker_id
        self.broker = broker
        self.devices = tuple(devices)
        self.client_id = broker.client_id or f"propgw-{gateway_id}-{broker_id}"
        self._clock = clock
        self._routes = _compile_routes(self.devices, tz)
        self._subscriptions = _subscriptions(self._routes)
        self._session: MqttSession | None = None
        self._sink: ReadingSink | None = None
        self._tracked: dict[tuple[int, str], _Tracked] = {}
        self._log_limits: dict[tuple[str, str], _LogLimit] = {}
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._subscribed = 0
        self._rearm: asyncio.Event | None = None  # made in run(): it binds to the loop
        self._armed: float | None = None  # the deadline the watchdog sleeps until
        self._has_stale = any(d.stale_after is not None for d in self.devices)

    @property
    def name(self) -> str:
        """``mqtt[<broker id>]``, used in task names and logs."""
        return f"mqtt[{self.broker_id}]"

    @property
    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        """``(filter, qos)`` pairs subscribed on every connection, one per distinct filter."""
        return self._subscriptions

    def health(self) -> LinkHealth:
        """A snapshot of the link: state, last error, counters and per-device state.

        Counters: ``messages`` received, ``readings`` emitted, ``malformed`` payloads,
        ``unmatched`` messages, ``bad_topic`` (a topic level that is not a valid device id),
        ``bad_split`` (a message whose ``split_by`` field is missing or names no valid device;
        it feeds no device of that entry),
        ``subscribe_refused`` filters, ``comm_loss`` readings, ``connects``,
        ``connect_failures`` and ``subscribed`` (completed subscription rounds).
        """
        session = self._session
        counters = dict(self._counters)
        counters["subscribed"] = self._subscribed
        counters["connects"] = session.counters.connects if session else 0
        counters["connect_failures"] = session.counters.failures if session else 0
        return LinkHealth(
            link=self.name,
            state=str(session.state if session else LinkState.STOPPED),
            last_error=session.last_error if session else None,
            counters=counters,
            devices={t.device_id: str(t.status) for t in self._tracked.values()},
        )

    async def run(self, sink: ReadingSink) -> None:
        """Connect, subscribe and emit readings into ``sink`` until cancelled.

        Args:
            sink: Awaited with every reading; a slow sink slows the driver down (aiomqtt's
                bounded incoming queue then drops, and logs it).

        Raises:
            RuntimeError: The driver is already running.
        """
        if self._sink is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._sink = sink
        self._rearm = asyncio.Event()
        self._session = MqttSession(
            self.broker_id, self.broker, client_id=self.client_id, clock=self._clock,
            on_connected=self._serve, on_down=self._link_down)
        started = self._clock.monotonic()
        for route in self._routes:
            key = (route.index, route.device.id)
            if not route.ids.templated and key not in self._tracked:
                self._tracked[key] = _Tracked(route.device.id, route.device, started,
                                              _Status.WAITING)
        try:
            async with task_group() as tg:
                tg.create_task(self._session.run(), name=f"{self.name}.link")
                if self._has_stale:
                    tg.create_task(self._watch_stale(), name=f"{self.name}.stale")
        finally:
            self._session.state = LinkState.STOPPED
            self._sink = None
            self._rearm = None
            self._armed = None

    # ------------------------------------------------------------------ connection

    async def _serve(self, client: aiomqtt.Client) -> None:
        """One connection's life: subscribe, then dispatch until the link breaks."""
        for start in range(0, len(self._subscriptions), _SUBSCRIBE_BATCH):
            batch = list(self._subscriptions[start:start + _SUBSCRIBE_BATCH])
            codes = await client.subscribe(batch, timeout=self.broker.connect_timeout)
            raise_if_cancelling()
            for (topic, qos), code in zip(batch, codes, strict=False):
                if getattr(code, "is_failure", False) or code == 0x80:
                    self._count("subscribe_refused")
                    log.warning("%s: broker refused subscription to %r (qos %d): %s",
                                self.name, topic, qos, code)
        self._subscribed += 1
        log.debug("%s: subscribed to %d filter(s)", self.name, len(self._subscriptions))
        async for message in client.messages:
            await self._dispatch(message)

    async def _link_down(self, reason: str) -> None:
        """The broker is unreachable: every device on it is comm-loss (once per outage)."""
        lost = [t for t in self._tracked.values() if t.status is not _Status.COMM_LOSS]
        for tracked in lost:
            await self._comm_loss(tracked, f"broker {self.broker_id} unreachable: {reason}",
                                  by_link=True)
        if lost:
            log.info("%s: %d device(s) marked comm-loss while the broker is unreachable",
                     self.name, len(lost))

    # ------------------------------------------------------------------ messages

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self._count("messages")
        topic = message.topic.value
        raw = message.payload
        payload = Payload(raw if isinstance(raw, bytes | bytearray | str)
                          else b"" if raw is None else str(raw))
        received = self._clock.time()
        matched = False
        for route in self._routes:
            values = route.pattern.match(topic)
            if values is None:
                continue
            matched = True
            device_id = route.device.id
            if route.ids.templated:
                try:
                    device_id = route.ids.device_id(values, payload)
                except IdError as exc:
                    self._bad_id(route, topic, exc)
                    continue
            self._seen(route, device_id)
            for decoder in route.decoders:
                try:
                    decoded = decoder.decode(payload, device=device_id)
                except DecodeError as exc:
                    reason = str(exc.args[0])
                    self._count("malformed")
                    self._limited_warning((device_id, decoder.name),
                                          "%s: malformed payload for %s on %r: %s",
                                          f"{device_id}.{decoder.name}", topic, reason)
                    reading = Reading(device_id, decoder.name, None, Quality.BAD, received,
                                      error=reason)
                else:
                    reading = Reading(device_id, decoder.name, decoded.value, Quality.GOOD,
                                      received, decoded.source_ts)
                await self._emit(reading)
        if not matched:
            self._count("unmatched")
            log.debug("%s: no point matches topic %r", self.name, topic)

    def _bad_id(self, route: _Route, topic: str, exc: IdError) -> None:
        if exc.from_payload:
            self._count("bad_split")
            self._limited_warning((route.device.id, "split_by"),
                                  "%s: message on %r feeds no device %r: %s", topic,
                                  route.device.id, exc)
        else:
            self._count("bad_topic")
            self._limited_warning(("", route.pattern.template),
                                  "%s: message on %r ignored: %s", topic, exc)

    def _seen(self, route: _Route, device_id: str) -> None:
        now = self._clock.monotonic()
        key = (route.index, device_id)
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(device_id, route.device, now, _Status.OK)
            self._tracked[key] = tracked
            log.debug("%s: first message from device %s", self.name, device_id)
            self._maybe_rearm(tracked)
            return
        tracked.last_seen = now
        if tracked.status is _Status.OK:
            return
        if tracked.status is _Status.COMM_LOSS:
            # After a broker outage every device recovers at once: one line each is noise.
            level = logging.DEBUG if tracked.lost_by_link else logging.INFO
            log.log(level, "%s: device %s is sending again", self.name, device_id)
            tracked.status = _Status.OK
            self._maybe_rearm(tracked)
        else:
            tracked.status = _Status.OK

    def _count(self, name: str) -> None:
        self._counters[name] += 1

    async def _emit(self, reading: Reading) -> None:
        if self._sink is None:
            raise RuntimeError(f"{self.name}: reading emitted while not running")
        self._count("readings")
        await self._sink(reading)

    async def _comm_loss(self, tracked: _Tracked, reason: str, *, by_link: bool) -> None:
        if tracked.status is _Status.COMM_LOSS:
            return  # the watchdog and a link loss may both get here while the sink waits
        tracked.status = _Status.COMM_LOSS
        tracked.lost_by_link = by_link
        now = self._clock.time()
        # Silent since its last message; but when the broker is lost, only since then: a
        # device that reports on change may rightly have said nothing for hours before.
        silent_since = now if by_link \
            else now - max(0.0, self._clock.monotonic() - tracked.last_seen)
        for point in tracked.cfg.points:
            self._count("comm_loss")
            await self._emit(Reading(tracked.device_id, point.name, None, Quality.COMM_LOSS,
                                     now, error=reason, silent_since=silent_since))

    def _limited_warning(self, key: tuple[str, str], msg: str, *args: object) -> None:
        """First WARNING per key, then at most one per interval; the rest DEBUG and counted."""
        now = self._clock.monotonic()
        limit = self._log_limits.get(key)
        if limit is None:
            self._log_limits[key] = _LogLimit(now)
            log.warning(msg, self.name, *args)
        elif now - limit.last_warning >= MALFORMED_LOG_INTERVAL:
            log.warning("%s (%d similar suppressed since the last warning)",
                        msg % (self.name, *args), limit.suppressed)
            limit.last_warning = now
            limit.suppressed = 0
        else:
            limit.suppressed += 1
            log.debug(msg, self.name, *args)

    # ------------------------------------------------------------------ stale watchdog

    def _maybe_rearm(self, tracked: _Tracked) -> None:
        stale_after = tracked.cfg.stale_after
        if stale_after is None:
            return
        if self._rearm is None:
            return
        if self._armed is None or tracked.last_seen + stale_after < self._armed:
            self._rearm.set()

    async def _watch_stale(self) -> None:
        rearm = self._rearm
        if rearm is None:
            raise RuntimeError(f"{self.name}: the watchdog runs only inside run()")
        while True:
            rearm.clear()
            self._armed = None
            now = self._clock.monotonic()
            due: list[_Tracked] = []
            next_deadline: float | None = None
            for tracked in self._tracked.values():
                stale_after = tracked.cfg.stale_after
                if stale_after is None or tracked.status is _Status.COMM_LOSS:
                    continue
                deadline = tracked.last_seen + stale_after
                if deadline <= now:
                    due.append(tracked)
                elif next_deadline is None or deadline < next_deadline:
                    next_deadline = deadline
            if due:
                for tracked in due:
                    silent = now - tracked.last_seen
                    log.warning("%s: device %s sent nothing for %.0f s; marking its points "
                                "comm-loss", self.name, tracked.device_id, silent)
                    await self._comm_loss(
                        tracked, f"no message for {tracked.cfg.stale_after:g} s",
                        by_link=False)
                continue  # emitting awaited the sink: look again with the current time
            if next_deadline is None:
                await rearm.wait()
            else:
                self._armed = next_deadline
                await self._sleep_until_or_set(next_deadline, rearm)

    async def _sleep_until_or_set(self, deadline: float, event: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            sleeper = tg.create_task(self._clock.sleep_until(deadline),
                                     name=f"{self.name}.stale.sleep")
            waker = tg.create_task(event.wait(), name=f"{self.name}.stale.rearm")
            sleeper.add_done_callback(lambda _: waker.cancel())
            waker.add_done_callback(lambda _: sleeper.cancel())


def _compile_routes(devices: Sequence[MqttDevice], tz: tzinfo) -> tuple[_Route, ...]:
    routes: list[_Route] = []
    problems: list[ConfigProblem] = []
    for index, device in enumerate(devices):
        try:
            ids = DeviceIds.compile(device.id, device.split_by)
        except ValueError as exc:
            problems.append(ConfigProblem(f"device {device.id!r}, split_by", str(exc)))
            continue
        by_topic: dict[str, list[PointDecoder]] = {}
        for point in device.points:
            try:
                decoder = PointDecoder(point, tz=tz)
            except ValueError as exc:
                problems.append(ConfigProblem(
                    f"device {device.id!r}, point {point.name!r}", str(exc)))
                continue
            by_topic.setdefault(point.topic, []).append(decoder)
        for topic, decoders in by_topic.items():
            try:
                pattern = TopicPattern.compile(topic)
            except ValueError as exc:
                problems.append(ConfigProblem(f"device {device.id!r}, topic", str(exc), topic))
                continue
            routes.append(_Route(index, device, pattern, tuple(decoders), ids))
    if problems:
        raise ConfigError("mqtt devices", problems)
    return tuple(routes)


def _subscriptions(routes: Sequence[_Route]) -> tuple[tuple[str, int], ...]:
    """One subscription per distinct filter, at the highest QoS any device on it asks for."""
    qos: dict[str, int] = {}
    for route in routes:
        qos[route.pattern.filter] = max(qos.get(route.pattern.filter, 0), route.device.qos)
    return tuple(qos.items())
