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
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the metrics read lanes without loading the MQTT libraries
    import aiomqtt
    import paho.mqtt.client as paho

__all__ = ["Lane", "LaneCounters"]


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

    def __init__(self, name: str, *, capacity: int, sheds: bool) -> None:
        if capacity <= 0:
            raise ValueError(f"lane {name!r}: capacity must be > 0, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.sheds = sheds
        self.counters = LaneCounters()
        self._waiting = 0

    def install(self, client: aiomqtt.Client) -> None:
        """Make ``client`` (not yet connected) acknowledge by hand and queue into this lane.

        aiomqtt 2.5.1 has no public way to do either: its paho client and its queue are
        private attributes (``queue_type`` cannot see the paho client that must acknowledge
        a shed message). Acknowledgements are written as :func:`_coalesce_writes` says,
        and the socket is read as :func:`_buffer_reads` says.
        """
        client._client.manual_ack_set(True)
        client._queue = _LaneQueue(self, client._client)
        _coalesce_writes(client)
        _buffer_reads(client)

    def taken(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """The gateway has taken ``message`` from ``client``: acknowledge it to the broker.

        Must be the client the message came from: a message id means nothing on another
        connection (paho then just reports "not connected", which is ignored: the broker of a
        clean session forgets what was in flight).
        """
        self.counters.taken += 1
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)

    def messages(self, client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
        """The messages of ``client`` (installed on, and connected), as ``client.messages``
        gives them (see :class:`_LaneMessages`)."""
        return _LaneMessages(client)

    @property
    def waiting(self) -> int:
        """Messages now waiting (on the current connection)."""
        return self._waiting


class _LaneQueue(asyncio.Queue["aiomqtt.Message"]):
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
        lane._waiting = 0

    def put_nowait(self, item: aiomqtt.Message) -> None:
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

    def get_nowait(self) -> aiomqtt.Message:
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
        if not isinstance(client._queue, _LaneQueue):
            raise TypeError("Lane.messages needs a client the lane was installed on")
        self._client = client
        self._queue: _LaneQueue = client._queue

    def __aiter__(self) -> _LaneMessages:
        return self

    async def __anext__(self) -> aiomqtt.Message:
        queue = self._queue
        while not queue.qsize():
            disconnected = self._client._disconnected  # a new future on each connect
            if disconnected.done():
                import aiomqtt  # noqa: PLC0415 - the metrics import this module without it

                raise aiomqtt.MqttError("Disconnected during message iteration") \
                    from disconnected.exception()
            await queue.wait(disconnected)
        return queue.get_nowait()


def _coalesce_writes(client: aiomqtt.Client) -> None:
    """Write what paho queues (PUBACKs above all) at the end of the loop iteration that
    queued it, and watch the socket for writability only when a write would block.

    aiomqtt registers the socket writer for every packet paho queues, through
    ``call_soon_threadsafe`` (a wake-up of the loop through its self-pipe), and removes it
    once the packet is written: per acknowledged message two epoll changes and a wake-up.
    Here the acknowledgements of one read go out in one ``send``. Measured with
    ``bench/mqtt_client_path.py`` (1,000 QoS 1 messages/s, loaded 2-core machine): see
    bench/RESULTS.md.
    """
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    paho = client._client
    scheduled = False
    writer: int | None = None  # the fd watched for writability, if any

    def flush() -> None:
        nonlocal scheduled, writer
        scheduled = False
        try:
            paho.loop_write()
        except Exception as exc:  # noqa: BLE001 - as aiomqtt: a broken socket ends the link
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)
            return
        sock = paho.socket()
        if paho.want_write() and sock is not None:
            if writer is None:  # the socket is full: write again once it drains
                writer = sock.fileno()
                loop.add_writer(writer, flush)
        elif writer is not None:
            loop.remove_writer(writer)
            writer = None

    def register(_client: Any, _userdata: Any, _sock: Any) -> None:
        nonlocal scheduled
        if scheduled:
            return
        scheduled = True
        if threading.get_ident() == loop_thread:
            loop.call_soon(flush)
        else:  # paho connects in an executor thread
            loop.call_soon_threadsafe(flush)

    def unregister(_client: Any, _userdata: Any, _sock: Any) -> None:
        nonlocal writer
        if writer is not None:
            loop.remove_writer(writer)
            writer = None

    paho.on_socket_register_write = register
    paho.on_socket_unregister_write = unregister


#: Bytes asked of the socket per read: a burst of small PUBLISH packets in one system call.
_READ_SIZE = 65536


def _buffer_reads(client: aiomqtt.Client) -> None:
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

    def on_open(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        # Called (in paho's connect, an executor thread) before CONNECT is sent and before
        # the event loop starts reading: nothing has been read from the socket yet.
        buffered = _BufferedSocket(sock)
        paho_client._sock = buffered
        if opened is not None:
            opened(paho_client, userdata, buffered)

    mqtt_client.on_socket_open = on_open


class _BufferedSocket:
    """A socket whose ``recv`` serves from the last large read (see :func:`_buffer_reads`).

    Everything but ``recv`` and ``pending`` goes to the socket itself. Only the event loop's
    thread reads; a read that would block raises as the socket's own would.
    """

    __slots__ = ("_chunk", "_pos", "_sock", "_tls")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._tls = hasattr(sock, "pending")
        self._chunk = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        pos = self._pos
        chunk = self._chunk
        if pos >= len(chunk):
            chunk = bytes(self._sock.recv(_READ_SIZE))  # raises BlockingIOError if none
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
