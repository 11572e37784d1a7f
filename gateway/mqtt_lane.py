"""Incoming MQTT messages acknowledged only once the gateway has taken them.

paho acknowledges a QoS 1 message (PUBACK) as soon as its ``on_message`` callback returns,
and aiomqtt's callback only puts the message on its queue: above that queue's bound the
message was discarded *after* the broker had been told it arrived, so the broker never held
anything back. A :class:`Lane` turns on paho's manual acknowledgement and replaces that queue:

* A message is acknowledged when the consumer calls :meth:`Lane.taken`, after it has handed the
  message on. Until then it counts against the broker's in-flight window for this client
  (mosquitto ``max_inflight_messages``); beyond the window the broker holds messages in its own
  per-client queue (``max_queued_messages``), so an overload pushes back to the broker.
* The lane's queue never refuses a message. A lane that ``sheds`` (telemetry) keeps at most
  ``capacity`` waiting: the oldest is then shed, acknowledged and counted. That only happens
  when the broker sends more than the window allows for (QoS 0 messages, which are never
  acknowledged, or a broker window larger than ``capacity``). A lane that does not shed
  (life-safety) keeps everything: for QoS 1 and 2 the broker's window bounds it.

Shedding is counted (:attr:`Lane.counters`) and never logged here: the owner logs a line when
it starts and a summary per interval, never one per message.

Why not stop reading the socket while the lane is full instead: it needs aiomqtt's private
reader callback, holds up PINGRESP and SUBACK with the messages, and leaves the excess to the
broker's queue, whose drops the gateway cannot count. Measured on a shared 2-core machine,
a consumer slowed to about 0.5 ms a message and a 20,000-message QoS 1 flood on mosquitto
2.0.11: pausing at 100 waiting (125 pauses) took about 110 messages/s, 6,646 in 60 s, while the
broker queued and then dropped the rest, uncounted by the client; this lane took about 290/s,
2,481 in 8.5 s, and counted the other 17,519 as shed. That broker also stops keeping its
in-flight window once acknowledgements flow, so there ``capacity`` is the bound that holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the metrics read lanes without loading the MQTT libraries
    import aiomqtt
    import paho.mqtt.client as paho

__all__ = ["Lane", "LaneCounters", "LaneMessage"]


class LaneMessage:
    """One incoming message, as the lane hands it on: paho's fields, taken once.

    aiomqtt wraps every message in its ``Message``, whose ``Topic`` validates the topic a
    subscriber was just given by the broker; a lane puts paho's fields in this plain record
    instead (about 0.25 µs a message against 0.95 µs on the bench machine).
    """

    __slots__ = ("mid", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes | bytearray, qos: int, mid: int,
                 retain: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.retain = retain

    def __repr__(self) -> str:
        return f"LaneMessage({self.topic!r}, {self.payload[:40]!r}, qos={self.qos}, mid={self.mid})"


@dataclass
class LaneCounters:
    """What one lane counted since the gateway started (over every connection)."""

    #: Messages the consumer took (and acknowledged).
    taken: int = 0
    #: Messages shed because ``capacity`` were already waiting (telemetry lanes only).
    shed: int = 0
    #: The most messages ever waiting in the lane at once.
    peak: int = 0


class Lane:
    """One stream of incoming messages on one connection at a time (see the module doc).

    Args:
        name: For logs and metrics, e.g. ``telemetry`` or ``life-safety``.
        capacity: Messages that may wait before the oldest is shed (when ``sheds``).
        sheds: Whether this lane may shed at all; False for life-safety messages.
    """

    def __init__(self, name: str, *, capacity: int, sheds: bool, linger: float = 0.0) -> None:
        if capacity <= 0:
            raise ValueError(f"lane {name!r}: capacity must be > 0, got {capacity}")
        if linger < 0:
            raise ValueError(f"lane {name!r}: linger must be >= 0, got {linger}")
        self.name = name
        self.capacity = capacity
        self.sheds = sheds
        self.linger = linger
        self.counters = LaneCounters()
        self._waiting = 0

    def install(self, client: aiomqtt.Client) -> None:
        """Make ``client`` (not yet connected) acknowledge by hand and queue into this lane.

        aiomqtt 2.5.1 has no public way to do either: its paho client and its queue are
        private attributes (``queue_type`` cannot see the paho client that must acknowledge
        a shed message). The socket is read as :func:`_buffer_reads` says (and written, as
        every client of the gateway, as :func:`gateway.mqtt_client.coalesce_writes` says).
        """
        client._client.manual_ack_set(True)
        queue = _LaneQueue(self, client._client)
        # aiomqtt's on_message (the only writer of its queue) is replaced below, so its queue
        # holds lane messages, never aiomqtt's.
        client._queue = queue  # type: ignore[assignment]
        client._client.on_message = queue.on_message
        _buffer_reads(client, self.linger)

    def taken(self, client: aiomqtt.Client, message: LaneMessage) -> None:
        """The gateway has taken ``message`` from ``client``: acknowledge it to the broker.

        Must be the client the message came from: a message id means nothing on another
        connection (paho then just reports "not connected", which is ignored: the broker of a
        clean session forgets what was in flight).
        """
        self.counters.taken += 1
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)

    def messages(self, client: aiomqtt.Client) -> AsyncIterator[LaneMessage]:
        """The messages of ``client`` (installed on, and connected), in the order
        ``client.messages`` would give them (see :class:`_LaneMessages`)."""
        return _LaneMessages(client)

    @property
    def waiting(self) -> int:
        """Messages now waiting (on the current connection)."""
        return self._waiting


class _LaneQueue(asyncio.Queue[LaneMessage]):
    """aiomqtt's incoming queue for one connection, bounded by its lane's policy.

    Read through :class:`_LaneMessages` only: it waits on one future that a message or the
    end of the connection resolves.
    """

    def __init__(self, lane: Lane, client: paho.Client) -> None:
        super().__init__()  # unbounded: the lane decides, aiomqtt must never see QueueFull
        self._lane = lane
        self._paho = client
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._watched: asyncio.Future[None] | None = None  # the end of connection watched
        self.puts = 0  # messages put (on this connection): what a read brought
        lane._waiting = 0

    def on_message(self, _client: paho.Client, _userdata: Any,
                   message: paho.MQTTMessage) -> None:
        """paho's ``on_message`` (in the event loop's thread, inside a socket read)."""
        self.put_nowait(LaneMessage(message.topic, message.payload, message.qos, message.mid,
                                    message.retain))

    def put_nowait(self, item: LaneMessage) -> None:
        self.puts += 1
        lane = self._lane
        if lane.sheds and self.qsize() >= lane.capacity:
            oldest = self.get_nowait()
            if oldest.qos > 0:
                self._paho.ack(oldest.mid, oldest.qos)
            lane.counters.shed += 1
        super().put_nowait(item)
        size = self.qsize()
        lane._waiting = size
        lane.counters.peak = max(lane.counters.peak, size)
        self._wake()

    def get_nowait(self) -> LaneMessage:
        item = super().get_nowait()
        self._lane._waiting = self.qsize()
        return item

    async def wait(self, disconnected: asyncio.Future[None]) -> None:
        """Return once a message was put or ``disconnected`` is done (or both)."""
        if self._watched is not disconnected:
            self._watched = disconnected
            disconnected.add_done_callback(self._wake)
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _LaneMessages:
    """The messages of one connection, in order; raises :class:`aiomqtt.MqttError` once the
    connection is gone and every message it brought was taken.

    What aiomqtt's ``client.messages`` does, without its cost per message: a task to get from
    the queue and an ``asyncio.wait`` on that task and the end of the connection.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        queue: object = client._queue
        if not isinstance(queue, _LaneQueue):
            raise TypeError("Lane.messages needs a client the lane was installed on")
        self._client = client
        self._queue = queue

    def __aiter__(self) -> _LaneMessages:
        return self

    async def __anext__(self) -> LaneMessage:
        queue = self._queue
        while not queue.qsize():
            disconnected = self._client._disconnected  # a new future on each connect
            if disconnected.done():
                import aiomqtt  # noqa: PLC0415 - the metrics import this module without it

                raise aiomqtt.MqttError("Disconnected during message iteration") \
                    from disconnected.exception()
            await queue.wait(disconnected)
        return queue.get_nowait()


#: Bytes asked of the socket per read: a burst of small PUBLISH packets in one system call.
_READ_SIZE = 65536


def _buffer_reads(client: aiomqtt.Client, linger: float) -> None:
    """Read the socket in large chunks and let paho take its packets from the chunk.

    paho reads every packet with at least three ``recv`` calls (the command byte, the length
    byte(s), the rest), and aiomqtt's reader callback reads one packet per readiness event,
    so a second packet already in the socket costs another trip through the event loop. Here
    one ``recv`` takes whatever has arrived; paho's small reads are served from that chunk,
    and aiomqtt's callback keeps reading while the chunk is not used up (it asks the socket
    for ``pending()`` bytes, as it does for TLS). Measured with ``bench/mqtt_client_path.py``:
    see bench/RESULTS.md.
    """
    mqtt_client = client._client
    opened = mqtt_client.on_socket_open
    closed = mqtt_client.on_socket_close
    loop = asyncio.get_running_loop()
    reader: _LingeringReader | None = None

    def on_open(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        # Called (in paho's connect, an executor thread) before CONNECT is sent and before
        # the event loop starts reading: nothing has been read from the socket yet.
        nonlocal reader
        buffered = _BufferedSocket(sock)
        paho_client._sock = buffered
        if opened is not None:
            opened(paho_client, userdata, buffered)  # aiomqtt: add its reader, from the loop
        if linger > 0:  # replace aiomqtt's reader, once it is added (the loop runs in order)
            reader = _LingeringReader(loop, client, buffered, linger)
            loop.call_soon_threadsafe(reader.start)

    def on_close(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        nonlocal reader
        if reader is not None and reader.reads_from(sock):
            reader.stop()
            reader = None
        if closed is not None:
            closed(paho_client, userdata, sock)

    mqtt_client.on_socket_open = on_open
    mqtt_client.on_socket_close = on_close


class _BufferedSocket:
    """A socket whose ``recv`` serves from the last large read (see :func:`_buffer_reads`).

    Everything but ``recv`` and ``pending`` goes to the socket itself. Only the event loop's
    thread reads; a read that would block raises as the socket's own would.
    """

    __slots__ = ("_chunk", "_pos", "_sock", "_tls", "reads")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._tls = hasattr(sock, "pending")
        self._chunk = b""
        self._pos = 0
        self.reads = 0  # reads of the socket that returned (data, or b"" at its end)

    def recv(self, size: int) -> bytes:
        pos = self._pos
        chunk = self._chunk
        if pos >= len(chunk):
            chunk = bytes(self._sock.recv(_READ_SIZE))  # raises BlockingIOError if none
            self.reads += 1
            if len(chunk) <= size:
                return chunk
            self._chunk = chunk
            pos = 0
        end = min(pos + size, len(chunk))  # never past the chunk: pending() stays exact
        self._pos = end
        return chunk[pos:end]

    def pending(self) -> int:
        """Bytes read but not yet taken (plus what TLS has decrypted but not returned)."""
        left = len(self._chunk) - self._pos
        return left + self._sock.pending() if self._tls else left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


#: Messages one read must bring for the next read to come at once rather than a linger later:
#: a batch that size already shares the pipeline's cost per pass, and waiting would only cap
#: the rate at the broker's in-flight window per linger.
_FULL_READ = 16


class _LingeringReader:
    """Read the socket at most once per ``linger`` while messages keep coming.

    After a read that brought something the socket is no longer watched; ``linger`` later it
    is read again, and so on while reads bring messages. A read that finds nothing (or
    brings only packets that are not messages) watches the socket again, so an idle link
    costs nothing and a lone message after a quiet spell is read at once. A read that
    brings :data:`_FULL_READ` messages or more is followed by the next one at once.
    """

    __slots__ = ("_client", "_fd", "_linger", "_loop", "_open", "_sock", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: aiomqtt.Client,
                 sock: _BufferedSocket, linger: float) -> None:
        self._loop = loop
        self._client = client
        self._sock = sock
        self._fd: int = sock.fileno()
        self._linger = linger
        self._open = True
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._open:
            self._loop.add_reader(self._fd, self._readable)

    def reads_from(self, sock: Any) -> bool:
        return sock is self._sock

    def stop(self) -> None:
        """The socket is closing (paho's ``on_socket_close``, in the loop's thread)."""
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _readable(self) -> None:
        self._loop.remove_reader(self._fd)
        self._read()

    def _read(self) -> None:
        self._timer = None
        if not self._open:
            return
        client = self._client
        paho = client._client
        sock = self._sock
        queue = client._queue
        if not isinstance(queue, _LaneQueue):
            raise TypeError("a lingering reader needs a client the lane was installed on")
        first = sock.reads
        puts = queue.puts
        try:
            while True:
                reads = sock.reads
                paho.loop_read()
                if sock.pending() > 0:  # the chunk, or TLS's decrypted bytes, not used up
                    continue
                # The socket gave something: there may be more (over TLS a read returns one
                # record, mosquitto sends one per packet), up to a batch that shares the pass.
                if sock.reads != reads and queue.puts - puts < _FULL_READ and self._open:
                    continue
                break
        except Exception as exc:  # noqa: BLE001 - as aiomqtt: a broken socket ends the link
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)
            return
        if not self._open:  # the read found the end of the connection
            return
        got = queue.puts - puts
        if sock.reads == first or got == 0:
            self._loop.add_reader(self._fd, self._readable)
        elif got >= _FULL_READ:
            self._loop.call_soon(self._read)
        else:
            self._timer = self._loop.call_later(self._linger, self._read)
