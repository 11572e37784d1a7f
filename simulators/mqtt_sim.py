"""What every MQTT device simulator shares: the broker link, the outbox, the command topic, faults.

:class:`MqttSim` is the base of the fire panel and access control simulators. A subclass
describes its device (state topics and their JSON bodies, events, actions, how time changes it);
the base class puts that on the wire:

* **Link.** One aiomqtt connection kept up with capped, jittered exponential backoff: the first
  failure is logged at WARNING, retries at DEBUG, the recovery at INFO. A retained availability
  message says ``online`` with every full report; ``offline`` is the MQTT will, so the broker
  announces a device that drops off, and a graceful shutdown says it too.
* **State and events.** State topics are retained and published when their body changes; a full
  report (availability and every state topic) goes out on every heartbeat, every reconnect and
  when ``silent`` ends. Events are not retained and are buffered while
  the broker is unreachable (at most ``max_buffered``; beyond that the oldest are dropped and
  counted, as a controller with a full event memory would).
* **Time.** Ticking, the heartbeat and fault durations run on an injectable
  :class:`~gateway.clock.Clock`; every payload carries ``ts``, the device's clock in epoch
  milliseconds.
* **Command topic.** ``<prefix>/<name>/cmd`` takes ``{"action": "fire", "params": {"zone": 3},
  "id": "any correlation value"}``; the result goes to ``<prefix>/<name>/cmd/result`` as
  ``{"ok": true, "action": ..., "result": "<one line>", "id": ..., "ts": ...}`` or
  ``{"ok": false, ..., "error": "..."}``. Try it during commissioning::

      mosquitto_sub -t 'fire/FACP-1/cmd/result' &
      mosquitto_pub -t 'fire/FACP-1/cmd' -m '{"action": "fire", "params": {"zone": 3}}'

* **Wire faults** (actions of every MQTT simulator):

  ============== ===========================================================================
  action         effect
  ============== ===========================================================================
  malformed      one broken, non-retained payload on a state topic; ``kind``: ``bad_json``
                 (cut in half), ``wrong_type`` (the field gets another JSON type: number →
                 text, true/false → number, text → list), ``missing_field`` (field removed)
  disconnect     drop the TCP connection without an MQTT DISCONNECT (the broker publishes
                 the will) and stay away ``seconds`` (default 10)
  clock_skew     the device clock (every ``ts``) is off by ``seconds`` (may be negative)
  silent         publish nothing at all, heartbeat included (the link stays up)
  clear_faults   end all of the above; a disconnected simulator reconnects at once
  ============== ===========================================================================

  Command results are the simulator's control plane: ``silent``, ``clock_skew`` and
  ``malformed`` never touch them (the ``disconnect`` command's result goes out before the
  link drops).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import json
import logging
import math
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiomqtt

from gateway.clock import Clock, SystemClock
from simulators.base import Action, ActionError

__all__ = [
    "MALFORMED_KINDS",
    "MqttSim",
    "param_bool",
    "param_choice",
    "param_float",
    "param_int",
]

log = logging.getLogger(__name__)

MALFORMED_KINDS = ("bad_json", "wrong_type", "missing_field")
_FAULTS = frozenset({"malformed", "disconnect", "clock_skew", "silent", "clear_faults"})
# Incoming traffic is only the command topic: a small bound, on purpose (aiomqtt 2.5.1 drops
# with a warning beyond it instead of growing).
_MAX_INCOMING = 100
# A device that vanishes without closing TCP is announced (its will) after 1.5 x this.
_KEEPALIVE = 30


@dataclass(frozen=True, slots=True)
class _Out:
    topic: str
    payload: bytes
    retain: bool


class MqttSim(abc.ABC):
    """Base of a simulated device that publishes JSON over MQTT (see the module docstring).

    Args:
        name: Device id; also the second topic level of its command topic.
        host: Broker host.
        port: Broker port.
        topic_prefix: First topic level(s) of everything it publishes.
        seed: Seed of the device's random choices, so runs repeat.
        heartbeat: Seconds between full state reports.
        tick: Seconds between model steps (timers: linkage, held-open doors...).
        clock: Time source for ticking, the heartbeat, fault durations and ``ts``.
        client_id: MQTT client id; default ``propgw-sim-<kind>-<name>``.
        connect_timeout: Deadline for connecting and for each acknowledged publish.
        reconnect_initial: First reconnect delay; doubles on each failure.
        reconnect_max: Longest reconnect delay.
        max_buffered: Messages kept while the broker is unreachable.

    Raises:
        ValueError: An impossible argument (empty name, non-positive interval).
    """

    kind: ClassVar[str]
    #: Parameters of ``malformed`` besides ``kind`` and ``field`` (which state topic to break).
    malformed_params: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        topic_prefix: str,
        seed: int = 0,
        heartbeat: float = 30.0,
        tick: float = 0.1,
        clock: Clock | None = None,
        client_id: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        max_buffered: int = 1000,
    ) -> None:
        if not name or "/" in name or "+" in name or "#" in name:
            raise ValueError(f"simulator name {name!r} must be one non-empty topic level")
        if not topic_prefix or topic_prefix.endswith("/") or "+" in topic_prefix \
                or "#" in topic_prefix:
            raise ValueError(f"topic_prefix {topic_prefix!r} must be topic level(s) without "
                             f"wildcards or a trailing '/'")
        if heartbeat <= 0 or tick <= 0 or connect_timeout <= 0:
            raise ValueError("heartbeat, tick and connect_timeout must be > 0")
        if not 0 < reconnect_initial <= reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        if max_buffered < 1:
            raise ValueError("max_buffered must be >= 1")
        self.name = name
        self.host = host
        self.port = port
        self.topic_prefix = topic_prefix
        self.heartbeat = heartbeat
        self.tick = tick
        self.clock: Clock = clock or SystemClock()
        self.client_id = client_id or f"propgw-sim-{self.kind}-{name}"
        self.connect_timeout = connect_timeout
        self.counters: dict[str, int] = dict.fromkeys(
            ("published", "dropped", "suppressed", "commands", "connects", "connect_failures"),
            0)
        self.rng = random.Random(seed)
        self._jitter = random.Random(f"{seed}/{name}/link")
        self._reconnect = (reconnect_initial, reconnect_max)
        self._tries = 0
        self._max_buffered = max_buffered
        self._outbox: collections.deque[_Out] = collections.deque()
        self._last_state: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._cmd_lock = asyncio.Lock()
        self._drop = asyncio.Event()  # a simulated disconnect is due
        self._resume = asyncio.Event()  # clear_faults during a simulated disconnect
        self._connected = False
        self._dropping = False
        self._warned_full = False
        self._silent = False
        self._skew = 0.0
        self._offline_until: float | None = None

    # ------------------------------------------------------------------ topics

    @property
    def cmd_topic(self) -> str:
        """Where the simulator takes interactive commands."""
        return f"{self.topic_prefix}/{self.name}/cmd"

    @property
    def result_topic(self) -> str:
        """Where it answers them."""
        return f"{self.cmd_topic}/result"

    @property
    def availability_topic(self) -> str:
        """Retained ``online`` / ``offline`` (the will)."""
        return f"{self.topic_prefix}/{self.name}/availability"

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""
        return self._connected

    # ------------------------------------------------------------------ what subclasses provide

    @abc.abstractmethod
    def _device_actions(self) -> list[Action]:
        """The device's own actions (the wire faults are added by the base class)."""

    @abc.abstractmethod
    def _apply_device(self, action: str, params: Mapping[str, Any]) -> str:
        """Apply one of :meth:`_device_actions`; raise :class:`ActionError` if unknown."""

    @abc.abstractmethod
    def _state_bodies(self) -> dict[str, dict[str, Any]]:
        """Every retained state topic and its body now, without ``ts``."""

    @abc.abstractmethod
    def _malformed_target(self, params: Mapping[str, Any]) -> tuple[str, str]:
        """``(state topic, default field)`` that ``malformed`` breaks."""

    @abc.abstractmethod
    def _device_snapshot(self) -> dict[str, Any]:
        """The device's state for :meth:`snapshot`."""

    def _step(self, dt: float) -> None:  # noqa: B027 -- optional hook: a device without timers
        """Advance the device's timers by ``dt`` seconds."""

    def _on_heartbeat(self) -> None:  # noqa: B027 -- optional hook
        """Publish whatever else the device sends on its heartbeat."""

    # ------------------------------------------------------------------ Simulator protocol

    def actions(self) -> list[Action]:
        """The device's actions followed by the wire faults."""
        malformed = {"kind": f"{' | '.join(MALFORMED_KINDS)} (default bad_json)",
                     "field": "field to break (wrong_type, missing_field)",
                     **self.malformed_params}
        return [
            *self._device_actions(),
            Action("malformed", "publish one broken (non-retained) payload on a state topic",
                   malformed),
            Action("disconnect", "drop the broker connection abruptly (the will fires) and "
                                 "stay away", {"seconds": "how long (default 10)"}),
            Action("clock_skew", "offset the device's timestamps",
                   {"seconds": "offset, may be negative (default 3600)"}),
            Action("silent", "stop publishing, heartbeat included",
                   {"on": "true|false (default true)"}),
            Action("clear_faults", "end every fault: publish, reconnect, correct clock"),
        ]

    def apply(self, action: str, params: Mapping[str, Any]) -> str:
        """Do ``action`` now and publish what changed.

        Args:
            action: A name from :meth:`actions`.
            params: Its parameters.

        Returns:
            One human line, prefixed with the simulator's name.

        Raises:
            ActionError: Unknown action or bad parameters.
        """
        if action in _FAULTS:
            result = self._apply_fault(action, params)
        else:
            result = self._apply_device(action, params)
            self._sync_state()
        return f"{self.name}: {result}"

    def snapshot(self) -> dict[str, Any]:
        """The device's state plus its link and faults."""
        offline_for = None
        if self._offline_until is not None:
            offline_for = round(max(0.0, self._offline_until - self.clock.monotonic()), 3)
        return {
            **self._device_snapshot(),
            "link": {"broker": f"{self.host}:{self.port}", "client_id": self.client_id,
                     "connected": self._connected, "counters": dict(self.counters)},
            "faults": {"silent": self._silent, "clock_skew": self._skew,
                       "offline_for": offline_for},
        }

    async def run(self) -> None:
        """Tick, beat and keep the broker link up until cancelled."""
        tag = f"{self.kind}[{self.name}]"
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._tick_loop(), name=f"{tag}.tick")
            tg.create_task(self._heartbeat_loop(), name=f"{tag}.heartbeat")
            tg.create_task(self._link_loop(), name=f"{tag}.link")

    # ------------------------------------------------------------------ helpers for subclasses

    def now_ms(self) -> int:
        """The device's clock (with any ``clock_skew``), epoch milliseconds."""
        return round((self.clock.time() + self._skew) * 1000)

    def publish_event(self, topic: str, body: Mapping[str, Any]) -> None:
        """Queue one event (not retained; buffered while the broker is unreachable)."""
        self._enqueue(topic, _encode({**body, "ts": self.now_ms()}), retain=False)

    def _sync_state(self) -> None:
        """Publish every state topic whose body changed since it was last published."""
        for topic, body in self._state_bodies().items():
            if self._last_state.get(topic) != body:
                self._publish_state(topic, body)

    def _publish_full(self) -> None:
        """Everything retained: availability first, then every state topic."""
        if self._connected:
            self._enqueue(self.availability_topic, b"online", retain=True)
        for topic, body in self._state_bodies().items():
            self._publish_state(topic, body)

    def _publish_state(self, topic: str, body: dict[str, Any]) -> None:
        self._last_state[topic] = body
        self._enqueue(topic, _encode({**body, "ts": self.now_ms()}), retain=True)

    def _enqueue(self, topic: str, payload: bytes, *, retain: bool) -> None:
        if self._silent:
            self.counters["suppressed"] += 1
            return
        if len(self._outbox) >= self._max_buffered:
            self._outbox.popleft()
            self.counters["dropped"] += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning("%s[%s]: %d messages waiting for the broker; dropping the oldest",
                            self.kind, self.name, self._max_buffered)
        self._outbox.append(_Out(topic, payload, retain))
        self._wake.set()

    # ------------------------------------------------------------------ faults

    def _apply_fault(self, action: str, params: Mapping[str, Any]) -> str:
        if action == "malformed":
            return self._malformed(params)
        if action == "disconnect":
            seconds = param_float(params, "seconds", 10.0)
            if seconds <= 0:
                raise ActionError("parameter 'seconds' must be > 0")
            self._offline_until = self.clock.monotonic() + seconds
            self._resume.clear()
            self._drop.set()
            return f"drops its broker connection for {seconds:g} s"
        if action == "clock_skew":
            self._skew = param_float(params, "seconds", 3600.0)
            return f"device clock off by {self._skew:+g} s"
        if action == "silent":
            on = param_bool(params, "on", True)
            was, self._silent = self._silent, on
            if was and not on:
                self._publish_full()
            return "silent: publishes nothing" if on else "publishes again"
        # clear_faults
        was_silent = self._silent
        self._silent, self._skew = False, 0.0
        self._offline_until = None
        self._drop.clear()
        self._resume.set()
        if was_silent:
            self._publish_full()
        return "faults cleared"

    def _malformed(self, params: Mapping[str, Any]) -> str:
        kind = param_choice(params, "kind", MALFORMED_KINDS, "bad_json")
        topic, default_field = self._malformed_target(params)
        body = self._state_bodies()[topic]
        document: dict[str, Any] = {**body, "ts": self.now_ms()}
        field = str(params.get("field", default_field))
        if kind != "bad_json" and field not in document:
            raise ActionError(f"no field {field!r} on {topic}; fields: {', '.join(document)}")
        if kind == "bad_json":
            text = _encode(document)
            payload = text[: len(text) // 2]
            what = "truncated JSON"
        elif kind == "wrong_type":
            document[field] = _wrong_type(document[field])
            payload = _encode(document)
            what = f"{field} = {json.dumps(document[field])}"
        else:
            del document[field]
            payload = _encode(document)
            what = f"no {field}"
        self._enqueue(topic, payload, retain=False)
        return f"malformed payload on {topic} ({what})"

    # ------------------------------------------------------------------ loops

    async def _tick_loop(self) -> None:
        last = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.tick)
            now = self.clock.monotonic()
            self._step(now - last)
            last = now
            self._sync_state()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.sleep(self.heartbeat)
            if self._connected:  # the reconnect publishes everything anyway
                self._publish_full()
                self._on_heartbeat()

    async def _link_loop(self) -> None:
        failing = False
        while True:
            await self._stay_offline()
            self._drop.clear()
            client = self._client()
            error = "connection closed"
            try:
                async with client:
                    self._on_connected(recovered=failing)
                    failing = False
                    try:
                        await self._serve(client)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except aiomqtt.MqttError as exc:
                # A link error racing our cancellation can win inside a TaskGroup; the
                # cancellation must still end the loop.
                if _cancelling():
                    raise asyncio.CancelledError from exc
                error = str(exc) or type(exc).__name__
            finally:
                self._connected = False
                _close_socket(client)
            if self._dropping:
                self._dropping = False
                log.info("%s[%s]: simulated disconnect", self.kind, self.name)
                continue
            delay = self._next_delay()
            self.counters["connect_failures"] += 1
            if not failing:
                log.warning("%s[%s]: broker %s:%d unavailable: %s; retrying in %.1fs",
                            self.kind, self.name, self.host, self.port, error, delay)
            else:
                log.debug("%s[%s]: still unavailable: %s; retrying in %.1fs", self.kind,
                          self.name, error, delay)
            failing = True
            await self.clock.sleep(delay)

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True)
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, will=will,
            keepalive=_KEEPALIVE, timeout=self.connect_timeout,
            max_queued_incoming_messages=_MAX_INCOMING)
        # aiomqtt's timeout bounds only the CONNACK wait; paho's TCP connect defaults to 5 s.
        client._client.connect_timeout = self.connect_timeout
        return client

    def _on_connected(self, *, recovered: bool) -> None:
        self._connected = True
        self._tries = 0
        self._warned_full = False
        self.counters["connects"] += 1
        if recovered:
            log.info("%s[%s]: connected again to %s:%d", self.kind, self.name, self.host,
                     self.port)
        else:
            log.debug("%s[%s]: connected to %s:%d", self.kind, self.name, self.host, self.port)
        # Queued state bodies are stale now: the full report below supersedes them. Events
        # stay, in order, ahead of it.
        events = [m for m in self._outbox if not m.retain]
        self._outbox.clear()
        self._outbox.extend(events)
        self._publish_full()
        self._wake.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.cmd_topic, qos=1, timeout=self.connect_timeout)
        _raise_if_cancelling()
        try:
            async with asyncio.TaskGroup() as tg:
                tag = f"{self.kind}[{self.name}]"
                tg.create_task(self._publisher(client), name=f"{tag}.publish")
                tg.create_task(self._drop_when_asked(client), name=f"{tag}.drop")
                # In the body, not a child: Python 3.11's TaskGroup never uncancels its
                # parent when a child fails after the body has finished, and the stale
                # cancel request would read as our own shutdown below.
                await self._commands(client)
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            while self._outbox:
                message = self._outbox[0]
                await client.publish(message.topic, message.payload, qos=1,
                                     retain=message.retain, timeout=self.connect_timeout)
                _raise_if_cancelling()
                # The head may have been dropped by a full outbox while we awaited the ack.
                if self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()
                self.counters["published"] += 1
            self._wake.clear()
            await self._wake.wait()

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.topic.matches(self.cmd_topic):
                continue
            async with self._cmd_lock:
                self.counters["commands"] += 1
                reply = self._command(message.payload)
                await client.publish(self.result_topic, _encode(reply), qos=1,
                                     timeout=self.connect_timeout)
                _raise_if_cancelling()

    def _command(self, raw: Any) -> dict[str, Any]:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) \
            else str(raw)
        reply: dict[str, Any] = {"ok": False}
        try:
            request = json.loads(text)
        except ValueError:
            reply["error"] = 'not JSON: send {"action": "...", "params": {...}}'
            return {**reply, "ts": round(self.clock.time() * 1000)}
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            reply["error"] = 'expected {"action": "...", "params": {...}}'
        else:
            reply["action"] = request["action"]
            if "id" in request:
                reply["id"] = request["id"]
            params = request.get("params") or {}
            try:
                if not isinstance(params, dict):
                    raise ActionError("params must be a JSON object")
                reply["result"] = self.apply(request["action"], params)
                reply["ok"] = True
            except (ValueError, TypeError) as exc:  # ActionError is a ValueError
                reply["error"] = str(exc)
        log.info("%s[%s]: command %s -> %s", self.kind, self.name, reply.get("action"),
                 reply.get("result") or reply.get("error"))
        return {**reply, "ts": round(self.clock.time() * 1000)}

    async def _drop_when_asked(self, client: aiomqtt.Client) -> None:
        await self._drop.wait()
        async with self._cmd_lock:  # let a ``disconnect`` command's result go out first
            self._drop.clear()
            self._dropping = True
            # No MQTT DISCONNECT: the broker must see a lost device and publish its will.
            sock = client._client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def _stay_offline(self) -> None:
        while self._offline_until is not None:
            if self.clock.monotonic() >= self._offline_until:
                self._offline_until = None
                return
            await _sleep_until_or(self.clock, self._offline_until, self._resume)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Graceful shutdown: a clean DISCONNECT suppresses the will, so say it ourselves."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(1.0):
                await client.publish(self.availability_topic, b"offline", qos=1, retain=True,
                                     timeout=1.0)

    def _next_delay(self) -> float:
        initial, cap = self._reconnect
        raw = min(initial * 2.0 ** self._tries, cap)
        self._tries = min(self._tries + 1, 32)
        return max(0.0, min(cap, raw * (1 + self._jitter.uniform(-0.2, 0.2))))


# ---------------------------------------------------------------------- parameters


def param_int(params: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """An integer parameter (``"3"`` is fine; ``3.5`` and ``true`` are not).

    Raises:
        ActionError: Missing without a default, or not an integer.
    """
    if key not in params:
        if default is None:
            raise ActionError(f"parameter {key!r} is required")
        return default
    value = params[key]
    if isinstance(value, bool):
        raise ActionError(f"parameter {key!r} must be an integer, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ActionError(f"parameter {key!r} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ActionError(f"parameter {key!r} must be an integer, got {value!r}")
    return int(number)


def param_float(params: Mapping[str, Any], key: str, default: float | None = None) -> float:
    """A number parameter.

    Raises:
        ActionError: Missing without a default, or not a finite number.
    """
    if key not in params:
        if default is None:
            raise ActionError(f"parameter {key!r} is required")
        return default
    value = params[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ActionError(f"parameter {key!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ActionError(f"parameter {key!r} must be a number, got {value!r}")
    return number


def param_bool(params: Mapping[str, Any], key: str, default: bool) -> bool:
    """A true/false parameter (also ``1``/``0``, ``on``/``off``, ``yes``/``no``).

    Raises:
        ActionError: Not one of those.
    """
    value = params.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no"):
        return False
    raise ActionError(f"parameter {key!r} must be true or false, got {value!r}")


def param_choice(params: Mapping[str, Any], key: str, choices: tuple[str, ...],
                 default: str) -> str:
    """One of ``choices``.

    Raises:
        ActionError: Anything else.
    """
    value = str(params.get(key, default))
    if value not in choices:
        raise ActionError(f"parameter {key!r} must be one of {', '.join(choices)}; got "
                          f"{value!r}")
    return value


# ---------------------------------------------------------------------- private


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return 2
    if isinstance(value, int | float):
        return f"0x{int(value):04X}"
    return [value]


def _close_socket(client: aiomqtt.Client) -> None:
    """Close the socket aiomqtt 2.5.1 leaves open after a failed connect (no-op otherwise).

    Same reason as ``gateway.mqtt_client._close_socket``: without it every failed attempt
    leaks a socket and aiomqtt's ``_misc_loop`` task.
    """
    client._client._sock_close()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _raise_if_cancelling() -> None:
    """Restore a cancellation that aiomqtt's ``asyncio.wait_for`` swallowed.

    In Python 3.11 ``wait_for`` returns the result when the awaited operation completes in the
    same loop iteration as the cancellation, and the request is lost: the task would then wait
    forever in its next ``await`` while marked as cancelling.
    """
    if _cancelling():
        raise asyncio.CancelledError


async def _sleep_until_or(clock: Clock, deadline: float, event: asyncio.Event) -> None:
    """Sleep on ``clock`` until ``deadline`` or until ``event`` is set, whichever is first."""
    if event.is_set():
        return
    async with asyncio.TaskGroup() as tg:
        sleeper = tg.create_task(clock.sleep_until(deadline), name="sim.offline.sleep")
        waker = tg.create_task(event.wait(), name="sim.offline.resume")
        sleeper.add_done_callback(lambda _: waker.cancel())
        waker.add_done_callback(lambda _: sleeper.cancel())
