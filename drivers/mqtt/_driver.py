"""The MQTT southbound driver: one broker, every MQTT device on it, readings out.

Per broker, :class:`MqttDriver` runs these tasks in one TaskGroup:

* ``mqtt[<broker>].link``: the shared :class:`~gateway.mqtt_client.MqttSession` state machine.
  On every fresh connection it subscribes again (the broker forgets clean sessions, so a
  restart must never lose a subscription) and then decodes messages into readings.
* ``mqtt[<broker>].safety``: when some topics carry life-safety points (read by P0/P1 rules)
  and others do not, a second connection (client id ``<client id>-safety``) for the
  life-safety topics alone. Each connection is a :class:`~gateway.mqtt_lane.Lane`: a message
  is acknowledged to the broker only once its readings are on their way, so an overload
  makes the broker hold messages back; the telemetry lane sheds (oldest first, counted) only
  beyond ``max_queued_messages`` waiting, the life-safety lane never sheds, and the broker
  holds or drops per connection, so a telemetry flood cannot crowd out a fire alarm.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import aiomqtt

from drivers.base import LinkHealth, ReadingSink
from drivers.mqtt._ids import DeviceIds, IdError, Selector
from drivers.mqtt._payload import Payload, PointDecoder
from drivers.mqtt._routing import RouteTable
from drivers.mqtt._topics import TopicPattern
from gateway.aio import raise_if_cancelling, task_group
from gateway.clock import Clock
from gateway.config import ALL_POINTS, BrokerConfig, MqttDevice
from gateway.errors import ConfigError, ConfigProblem, DecodeError
from gateway.model import Quality, Reading
from gateway.mqtt_client import LinkState, MqttSession
from gateway.mqtt_lane import Lane, LaneMessage

__all__ = ["MqttDriver"]

log = logging.getLogger(__name__)

#: After the first WARNING about a point's malformed payloads, at most one per this many seconds.
MALFORMED_LOG_INTERVAL = 60.0
#: After the first WARNING about shed telemetry, one summary line per this many seconds.
SHED_LOG_INTERVAL = 60.0
_COUNTERS = ("messages", "readings", "malformed", "unmatched", "unselected", "bad_topic",
             "bad_split", "too_many_devices", "subscribe_refused", "comm_loss", "broker_dropped")
#: mosquitto's cumulative count of messages it dropped (queue or in-flight limits), retained.
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
# Filters per SUBSCRIBE packet: small enough for brokers that cap packet size.
_SUBSCRIBE_BATCH = 64


_GOOD = Quality.GOOD

#: Lane names, in logs and metrics.
TELEMETRY_LANE = "telemetry"
SAFETY_LANE = "life-safety"
#: The state a driver with two connections reports: the worse one.
_WORST_FIRST = (LinkState.DOWN, LinkState.CONNECTING, LinkState.STOPPED, LinkState.CONNECTED)


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
    select: Selector | None  # the device's ``select``; shared by its routes


@dataclass(slots=True, eq=False)
class _Tracked:
    """A concrete device: a literal one, or a templated one seen at least once."""

    device_id: str
    cfg: MqttDevice
    last_seen: float  # clock.monotonic() of the last message (or of the driver's start)
    status: _Status
    index: int  # the device's position among the driver's devices
    lost_by_link: bool = False


@dataclass(eq=False)
class _LaneLink:
    """One connection of the driver and the routes whose messages it carries."""

    lane: Lane
    client_id: str
    #: The routes this connection reads, and what each recent topic matched among them.
    routes: RouteTable[_Route]
    subscriptions: tuple[tuple[str, int], ...]
    #: Indices of the devices with a route here: comm-loss when this connection is down.
    device_indices: frozenset[int]
    session: MqttSession | None = None
    #: ``lane.counters.shed`` when the last line about shedding was logged, and when.
    shed_logged: int = 0
    shed_logged_at: float | None = field(default=None)
    #: Whether the WARNING about a life-safety backlog beyond capacity was logged.
    over_capacity_logged: bool = False


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
        life_safety: Device id (as configured) → names of its life-safety points (``"*"``:
            all); their topics get their own connection and are never shed.

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
        life_safety: Mapping[str, frozenset[str]] | None = None,
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
        self._links = _lanes(self._routes, life_safety or {}, self.client_id,
                             capacity=broker.max_queued_messages,
                             linger=broker.read_linger)
        #: Devices with a route on the life-safety connection, when there are two.
        self._safety_indices = frozenset().union(*(
            link.device_indices for link in self._links
            if link.lane.name == SAFETY_LANE and len(self._links) > 1))
        self._sink: ReadingSink | None = None
        self._tracked: dict[tuple[int, str], _Tracked] = {}
        #: Devices each templated entry has made (its routes share the count).
        self._made: dict[str, int] = {}
        #: The broker's last drop count, and the drops already logged (and when).
        self._broker_total: int | None = None
        self._drops_logged = 0
        self._drops_logged_at: float | None = None
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

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """The connections' lanes: ``telemetry`` and/or ``life-safety``."""
        return tuple(link.lane for link in self._links)

    @property
    def lane_subscriptions(self) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
        """``(lane name, subscriptions)`` per connection: a config reload that moves a topic
        between lanes (a rule's priority changed) must restart the driver."""
        return tuple((link.lane.name, link.subscriptions) for link in self._links)

    def health(self) -> LinkHealth:
        """A snapshot of the link: state, last error, counters and per-device state.

        Counters: ``messages`` received, ``readings`` emitted, ``malformed`` payloads,
        ``unmatched`` messages, ``unselected`` (a message on a device's topic that no
        device's ``select`` takes: a panel's zone nobody configured), ``bad_topic`` (a topic
        level that is not a valid device id),
        ``bad_split`` (a message whose ``split_by`` field is missing or names no valid device;
        it feeds no device of that entry),
        ``subscribe_refused`` filters, ``comm_loss`` readings, ``connects``,
        ``connect_failures``, ``subscribed`` (completed subscription rounds), ``shed``
        (telemetry messages shed because ``max_queued_messages`` were waiting) and
        ``queued_peak`` (the most messages ever waiting in one lane). With two connections
        the state is the worse of the two and the connection counters add up.
        """
        sessions = [link.session for link in self._links if link.session is not None]
        counters = dict(self._counters)
        counters["subscribed"] = self._subscribed
        counters["connects"] = sum(s.counters.connects for s in sessions)
        counters["connect_failures"] = sum(s.counters.failures for s in sessions)
        counters["shed"] = sum(link.lane.counters.shed for link in self._links)
        counters["queued_peak"] = max(link.lane.counters.peak for link in self._links)
        states = [s.state for s in sessions] or [LinkState.STOPPED]
        state = next((st for st in _WORST_FIRST if st in states), states[0])
        return LinkHealth(
            link=self.name,
            state=str(state),
            last_error=next((s.last_error for s in sessions if s.last_error), None),
            counters=counters,
            devices={t.device_id: str(t.status) for t in self._tracked.values()},
        )

    async def run(self, sink: ReadingSink) -> None:
        """Connect, subscribe and emit readings into ``sink`` until cancelled.

        Args:
            sink: Awaited with every reading; a slow sink slows the driver down, and with
                it the broker (messages are acknowledged once their readings are taken).

        Raises:
            RuntimeError: The driver is already running.
        """
        if self._sink is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._sink = sink
        self._rearm = asyncio.Event()
        for link in self._links:
            link.session = _session(self, link)
        started = self._clock.monotonic()
        for route in self._routes:
            key = (route.index, route.device.id)
            if not route.ids.templated and key not in self._tracked:
                self._tracked[key] = _Tracked(route.device.id, route.device, started,
                                              _Status.WAITING, route.index)
        try:
            async with task_group() as tg:
                for link in self._links:
                    assert link.session is not None
                    suffix = "safety" if link.lane.name == SAFETY_LANE and len(self._links) > 1 \
                        else "link"
                    tg.create_task(link.session.run(), name=f"{self.name}.{suffix}")
                if self._has_stale:
                    tg.create_task(self._watch_stale(), name=f"{self.name}.stale")
        finally:
            for link in self._links:
                if link.session is not None:
                    link.session.state = LinkState.STOPPED
            self._sink = None
            self._rearm = None
            self._armed = None

    # ------------------------------------------------------------------ connection

    async def _serve(self, link: _LaneLink, client: aiomqtt.Client) -> None:
        """One connection's life: subscribe, then dispatch until the link breaks."""
        subscriptions = link.subscriptions
        for start in range(0, len(subscriptions), _SUBSCRIBE_BATCH):
            batch = list(subscriptions[start:start + _SUBSCRIBE_BATCH])
            codes = await client.subscribe(batch, timeout=self.broker.connect_timeout)
            raise_if_cancelling()
            for (topic, qos), code in zip(batch, codes, strict=False):
                if getattr(code, "is_failure", False) or code == 0x80:
                    self._count("subscribe_refused")
                    log.warning("%s: broker refused subscription to %r (qos %d): %s",
                                self.name, topic, qos, code)
        self._subscribed += 1
        log.debug("%s: subscribed to %d filter(s) for %s", self.name, len(subscriptions),
                  link.lane.name)
        lane = link.lane
        urgent = lane.name == SAFETY_LANE and len(self._links) > 1
        if self.broker.broker_drops and link is self._links[0]:
            await self._watch_broker_drops(client)
        async for message in lane.messages(client):
            if message.topic == BROKER_DROPPED_TOPIC:
                self._broker_dropped(message.payload)  # QoS 0, and not a device's message
                continue
            await self._dispatch(message, link.routes, urgent=urgent)
            lane.taken(client, message)
            if lane.counters.shed != link.shed_logged:
                self._log_shed(link)
            elif lane.counters.peak > lane.capacity and not link.over_capacity_logged:
                link.over_capacity_logged = True
                log.warning("%s: more than %d %s messages waiting at once (%d); none is shed "
                            "on this lane: look for a device flooding life-safety topics",
                            self.name, lane.capacity, lane.name, lane.counters.peak)

    async def _watch_broker_drops(self, client: aiomqtt.Client) -> None:
        """Subscribe to the broker's own count of dropped messages (mosquitto's $SYS), so what
        it dropped before the gateway took it is counted too. Optional: a broker that refuses
        (no $SYS, or an ACL) costs one INFO line."""
        codes = await client.subscribe(BROKER_DROPPED_TOPIC, qos=0,
                                       timeout=self.broker.connect_timeout)
        raise_if_cancelling()
        if any(getattr(code, "is_failure", False) or code == 0x80 for code in codes):
            log.info("%s: the broker does not let the gateway read %s; messages it drops are "
                     "not counted (set broker_drops: false to stop asking)", self.name,
                     BROKER_DROPPED_TOPIC)

    def _broker_dropped(self, payload: object) -> None:
        """Take the broker's cumulative drop count; what grew since the last one is ours to
        count. The first value is the baseline (drops before this connection are not known to
        be the gateway's); a smaller value means the broker restarted and counts afresh."""
        try:
            total = int(payload.decode() if isinstance(payload, bytes | bytearray)
                        else str(payload))
        except (TypeError, ValueError):
            return
        last, self._broker_total = self._broker_total, total
        if last is None:
            return
        grew = total - last if total >= last else total
        if grew <= 0:
            return
        self._counters["broker_dropped"] += grew
        now = self._clock.monotonic()
        dropped = self._counters["broker_dropped"]
        if self._drops_logged_at is None or now - self._drops_logged_at >= SHED_LOG_INTERVAL:
            log.warning("%s: the broker dropped %d message(s) before the gateway took them "
                        "(%d since start): its queue for the gateway was full; the gateway "
                        "cannot keep up with the devices' rate (see docs/operations.md)",
                        self.name, dropped - self._drops_logged, dropped)
            self._drops_logged, self._drops_logged_at = dropped, now

    def _log_shed(self, link: _LaneLink) -> None:
        """A WARNING when shedding starts, then one summary line per interval at most."""
        now = self._clock.monotonic()
        lane = link.lane
        if link.shed_logged_at is None:
            log.warning("%s: more %s messages than the gateway keeps up with: shedding the "
                        "oldest beyond %d waiting (counted as 'shed'; a summary follows at "
                        "most every %.0f s)", self.name, lane.name, lane.capacity,
                        SHED_LOG_INTERVAL)
        elif now - link.shed_logged_at < SHED_LOG_INTERVAL:
            return
        else:
            log.warning("%s: %d %s message(s) shed in the last %.0f s (%d since start)",
                        self.name, lane.counters.shed - link.shed_logged, lane.name,
                        now - link.shed_logged_at, lane.counters.shed)
        link.shed_logged = lane.counters.shed
        link.shed_logged_at = now

    async def _link_down(self, link: _LaneLink, reason: str) -> None:
        """The broker is unreachable: every device on it is comm-loss (once per outage)."""
        lost = [t for (index, _), t in self._tracked.items()
                if t.status is not _Status.COMM_LOSS and index in link.device_indices]
        for tracked in lost:
            await self._comm_loss(tracked, f"broker {self.broker_id} unreachable: {reason}",
                                  by_link=True)
        if lost:
            log.info("%s: %d device(s) marked comm-loss while the broker is unreachable",
                     self.name, len(lost))

    # ------------------------------------------------------------------ messages

    async def _dispatch(self, message: LaneMessage, routes: RouteTable[_Route], *,
                        urgent: bool = False) -> None:
        """Decode one message into readings and hand them on together (one batch).

        ``routes`` are the routes of the connection the message came on; a topic they have
        seen before is looked up, not matched again (see :class:`RouteTable`).
        """
        self._counters["messages"] += 1
        topic = message.topic
        raw = message.payload
        payload = Payload(raw if isinstance(raw, bytes | bytearray | str)
                          else b"" if raw is None else str(raw))
        received = self._clock.time()
        matched = 0  # routes whose topic matched
        skipped = 0  # of them, routes whose device's ``select`` does not take the message
        readings: list[Reading] = []
        for route, values in routes.match(topic):
            matched += 1
            if route.select is not None and not route.select.selects(payload):
                skipped += 1
                continue
            device_id = route.device.id
            if route.ids.templated:
                try:
                    device_id = route.ids.device_id(values, payload)
                except IdError as exc:
                    self._bad_id(route, topic, exc)
                    continue
            if not self._seen(route, device_id):
                continue
            for decoder in route.decoders:
                try:
                    value, source_ts = decoder.decode_value(payload, device=device_id)
                except DecodeError as exc:
                    reason = str(exc.args[0])
                    self._count("malformed")
                    self._limited_warning((device_id, decoder.name),
                                          "%s: malformed payload for %s on %r: %s",
                                          f"{device_id}.{decoder.name}", topic, reason)
                    readings.append(Reading(device_id, decoder.name, None, Quality.BAD,
                                            received, error=reason))
                else:
                    readings.append(Reading(device_id, decoder.name, value, _GOOD, received,
                                            source_ts))
        if readings:
            await self._emit(readings, urgent=urgent)
        if skipped and skipped == matched:
            self._unselected(routes, topic, payload)
            return
        if not matched and len(routes) < len(self._routes) \
                and any(link.routes.match(topic) for link in self._links):
            return  # another connection's topic under an overlapping filter: it reads it
        if not matched:
            self._count("unmatched")
            log.debug("%s: no point matches topic %r", self.name, topic)

    def _unselected(self, routes: RouteTable[_Route], topic: str, payload: Payload) -> None:
        """Count a message no device here selects, unless another connection reads it (or
        counts it: both connections get a topic that both subscribe to)."""
        if len(routes) < len(self._routes):
            for link in self._links:
                if link.routes is routes:
                    continue
                there = [r for r, _ in link.routes.match(topic)]
                if any(r.select is None or r.select.selects(payload) for r in there):
                    return
                if there and link is self._links[0]:
                    return
        self._count("unselected")
        log.debug("%s: no device selects the message on %r", self.name, topic)

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

    def _seen(self, route: _Route, device_id: str) -> bool:
        """Note a message from ``device_id``; False when its entry may make no more devices."""
        now = self._clock.monotonic()
        key = (route.index, device_id)
        tracked = self._tracked.get(key)
        if tracked is None:
            made = self._made.get(route.device.id, 0)
            if made >= route.device.max_devices:
                self._count("too_many_devices")
                self._limited_warning(
                    (route.device.id, "max_devices"), "%s: device %r refused: the entry %r "
                    "already made %d devices (max_devices)", device_id, route.device.id,
                    route.device.max_devices)
                return False
            self._made[route.device.id] = made + 1
            tracked = _Tracked(device_id, route.device, now, _Status.OK, route.index)
            self._tracked[key] = tracked
            log.debug("%s: first message from device %s", self.name, device_id)
            self._maybe_rearm(tracked)
            return True
        tracked.last_seen = now
        if tracked.status is _Status.OK:
            return True
        if tracked.status is _Status.COMM_LOSS:
            # After a broker outage every device recovers at once: one line each is noise.
            level = logging.DEBUG if tracked.lost_by_link else logging.INFO
            log.log(level, "%s: device %s is sending again", self.name, device_id)
            tracked.status = _Status.OK
            self._maybe_rearm(tracked)
        else:
            tracked.status = _Status.OK
        return True

    def _count(self, name: str) -> None:
        self._counters[name] += 1

    async def _emit(self, readings: list[Reading], *, urgent: bool) -> None:
        if self._sink is None:
            raise RuntimeError(f"{self.name}: reading emitted while not running")
        self._counters["readings"] += len(readings)
        await self._sink(readings, urgent=urgent)

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
        readings = [Reading(tracked.device_id, point.name, None, Quality.COMM_LOSS, now,
                            error=reason, silent_since=silent_since)
                    for point in tracked.cfg.points]
        self._counters["comm_loss"] += len(readings)
        # On the life-safety lane's footing when the device has a route there: its comm-loss
        # must not arrive after a newer urgent reading of the same device.
        await self._emit(readings, urgent=tracked.index in self._safety_indices)

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
        try:
            select = Selector.compile(device.select)
        except ValueError as exc:
            problems.append(ConfigProblem(f"device {device.id!r}, select", str(exc)))
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
            routes.append(_Route(index, device, pattern, tuple(decoders), ids, select))
    if problems:
        raise ConfigError("mqtt devices", problems)
    return tuple(routes)


def _lanes(routes: Sequence[_Route], life_safety: Mapping[str, frozenset[str]],
           client_id: str, *, capacity: int, linger: float) -> tuple[_LaneLink, ...]:
    """One connection for the telemetry routes and one for the life-safety routes (a route
    is life-safety when one of its points is); a single one when either kind is absent.
    Only the telemetry connection lingers between reads (``linger``): a life-safety message
    is read as soon as it arrives."""
    safety: list[_Route] = []
    telemetry: list[_Route] = []
    for route in routes:
        names = life_safety.get(route.device.id, frozenset())
        is_safety = ALL_POINTS in names or any(d.name in names for d in route.decoders)
        (safety if is_safety else telemetry).append(route)
    links: list[_LaneLink] = []
    if telemetry:
        links.append(_link(Lane(TELEMETRY_LANE, capacity=capacity, sheds=True, linger=linger),
                           client_id, telemetry))
    if safety:
        links.append(_link(Lane(SAFETY_LANE, capacity=capacity, sheds=False),
                           f"{client_id}-safety" if telemetry else client_id, safety))
    return tuple(links)


def _link(lane: Lane, client_id: str, routes: Sequence[_Route]) -> _LaneLink:
    return _LaneLink(lane, client_id, RouteTable(routes), _subscriptions(routes),
                     frozenset(r.index for r in routes))


def _session(driver: MqttDriver, link: _LaneLink) -> MqttSession:
    async def serve(client: aiomqtt.Client) -> None:
        await driver._serve(link, client)

    async def down(reason: str) -> None:
        await driver._link_down(link, reason)

    return MqttSession(driver.broker_id if link.client_id == driver.client_id
                       else f"{driver.broker_id}/{link.lane.name}",
                       driver.broker, client_id=link.client_id, clock=driver._clock,
                       on_connected=serve, on_down=down, prepare=link.lane.install)


def _subscriptions(routes: Sequence[_Route]) -> tuple[tuple[str, int], ...]:
    """One subscription per distinct filter, at the highest QoS any device on it asks for."""
    qos: dict[str, int] = {}
    for route in routes:
        qos[route.pattern.filter] = max(qos.get(route.pattern.filter, 0), route.device.qos)
    return tuple(qos.items())
