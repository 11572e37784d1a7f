"""One way to connect to an MQTT broker, shared by the device-side driver and the upstream.

:class:`MqttSession` owns the reconnect state machine (capped, jittered backoff; WARNING on the
first failure, DEBUG while retrying, INFO on recovery) so both sides behave the same. aiomqtt
2.5.1 has no automatic reconnect and raises :class:`aiomqtt.MqttError` from ``client.messages``
on disconnect; the session turns that into "call ``on_connected`` again on a fresh connection".
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import BrokerConfig, TlsConfig

__all__ = ["LinkState", "MqttSession", "build_client", "coalesce_writes"]

log = logging.getLogger(__name__)

# Nagle against delayed ACK stalls ~0.3 % of small publishes by ~32 ms on loopback (measured).
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
# CONNACK codes that will not fix themselves by retrying soon: bad credentials / not authorised.
_AUTH_CODES = {4, 5, 134, 135}


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DOWN = "down"
    STOPPED = "stopped"


async def build_client(cfg: BrokerConfig, *, client_id: str,
                       will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    """Create (not connect) an aiomqtt client for ``cfg``.

    Must run inside the event loop: aiomqtt 2.5.1 grabs the running loop in ``__init__``.
    Certificate loading is blocking file I/O, so it runs in a thread.
    """
    tls_context = await asyncio.to_thread(_tls_context, cfg.tls) if cfg.tls else None
    client = aiomqtt.Client(
        hostname=cfg.host,
        port=cfg.effective_port,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else None,
        identifier=client_id,
        protocol=(aiomqtt.ProtocolVersion.V5 if cfg.protocol == "5"
                  else aiomqtt.ProtocolVersion.V311),
        will=will,
        keepalive=int(cfg.keepalive),
        timeout=cfg.connect_timeout,
        # Bounded on purpose: aiomqtt drops (with a warning) beyond this instead of growing.
        # Device links replace this queue with a gateway.mqtt_lane.Lane, which never drops
        # after an acknowledgement.
        max_queued_incoming_messages=cfg.max_queued_messages,
        tls_context=tls_context,
        tls_insecure=cfg.tls.insecure if cfg.tls else None,
        socket_options=_SOCKET_OPTIONS,
    )
    # aiomqtt's ``timeout`` only bounds the wait for CONNACK; paho's own TCP connect and TLS
    # handshake (in an executor thread) default to 5 s whatever the config says.
    client._client.connect_timeout = cfg.connect_timeout
    coalesce_writes(client)
    return client


def coalesce_writes(client: aiomqtt.Client) -> None:
    """Write what paho queues at the end of the loop iteration that queued it, and watch the
    socket for writability only while a write would block.

    aiomqtt registers the socket writer for every packet paho queues, through
    ``call_soon_threadsafe`` with the socket's number taken at that moment, and removes it once
    the packet is written. That costs two epoll changes and a loop wake-up per packet, and it
    races a lost connection: when the socket is closed before the scheduled registration runs,
    the loop is asked to watch a closed descriptor (an ``OSError`` traceback in the log, or,
    had the number been reused by the next connection's socket, a writer on the wrong socket).
    Here the socket is looked up when the write runs, so a closed one is simply not written;
    and the acknowledgements of one read go out in one ``send``. Measured with
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


@dataclass
class _Counters:
    connects: int = 0
    failures: int = 0


class MqttSession:
    """Keeps one broker connection up and runs ``on_connected`` on each fresh connection.

    ``on_connected(client)`` subscribes/publishes and then returns only when it is done or
    raises :class:`aiomqtt.MqttError` when the link breaks; the session then reconnects.
    ``prepare(client)``, when given, runs on each new client before it connects (a device
    link installs its :class:`~gateway.mqtt_lane.Lane` there).
    """

    def __init__(
        self,
        name: str,
        cfg: BrokerConfig,
        *,
        client_id: str,
        clock: Clock,
        on_connected: Callable[[aiomqtt.Client], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]] | None = None,
        will: aiomqtt.Will | None = None,
        prepare: Callable[[aiomqtt.Client], None] | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.client_id = client_id
        self.state = LinkState.STOPPED
        self.last_error: str | None = None
        self.counters = _Counters()
        self._clock = clock
        self._on_connected = on_connected
        self._on_down = on_down
        self._will = will
        self._prepare = prepare
        self._backoff = Backoff(base=cfg.reconnect.initial, cap=cfg.reconnect.max,
                                jitter=cfg.reconnect.jitter)

    @property
    def where(self) -> str:
        scheme = "mqtts" if self.cfg.tls else "mqtt"
        return f"{scheme}://{self.cfg.host}:{self.cfg.effective_port}"

    async def run(self) -> None:
        """Connect, serve, reconnect; forever until cancelled (or ``on_connected`` returns)."""
        try:
            await self._run()
        finally:
            # Whatever ends the loop (a stop, a bug), nobody may read "connected" any more.
            self.state = LinkState.STOPPED

    async def _run(self) -> None:
        failing = False
        while True:
            self.state = LinkState.CONNECTING
            was_connected = False
            try:
                client = await build_client(self.cfg, client_id=self.client_id, will=self._will)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # Certificate files missing or unreadable: a config problem, retried slowly.
                # Only building the client counts: an error while serving is a bug, and goes
                # to the supervisor with its traceback.
                delay = self._failed(exc, first=not failing, permanent=True)
                failing = True
                await self._down(delay)
                continue
            if self._prepare is not None:
                self._prepare(client)
            try:
                try:
                    async with client:
                        self.state = LinkState.CONNECTED
                        was_connected = True
                        self.counters.connects += 1
                        self._backoff.reset()
                        if failing:
                            log.info("mqtt[%s]: connected again to %s", self.name, self.where)
                        else:
                            log.info("mqtt[%s]: connected to %s", self.name, self.where)
                        failing = False
                        self.last_error = None
                        await self._on_connected(client)
                        return
                finally:
                    _close_socket(client)
            except aiomqtt.MqttError as exc:
                delay = self._failed(exc, first=not failing, lost=was_connected)
                failing = True
            await self._down(delay)

    async def _down(self, delay: float) -> None:
        self.state = LinkState.DOWN
        if self._on_down is not None:
            await self._on_down(self.last_error or "disconnected")
        await self._clock.sleep(delay)

    def _failed(self, exc: Exception, *, first: bool, permanent: bool = False,
                lost: bool = False) -> float:
        self.counters.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        code = getattr(exc, "rc", None)
        code_value = getattr(code, "value", code)
        if permanent or code_value in _AUTH_CODES:
            delay = self._backoff.give_up_to_cap()
        else:
            delay = self._backoff.next_delay()
        if lost:
            log.warning("mqtt[%s]: connection to %s lost: %s; reconnecting in %.1fs",
                        self.name, self.where, self.last_error, delay)
        elif first:
            log.warning("mqtt[%s]: %s unavailable: %s; retrying in %.1fs", self.name,
                        self.where, self.last_error, delay)
        else:
            log.debug("mqtt[%s]: still unavailable: %s; retrying in %.1fs", self.name,
                      self.last_error, delay)
        return delay


def _close_socket(client: aiomqtt.Client) -> None:
    """Close the client's socket if aiomqtt left it open (a no-op after a clean exit).

    aiomqtt 2.5.1 leaves the socket open, its reader registered and its ``_misc_loop`` task
    running when ``__aenter__`` fails after the TCP connect (no CONNACK in time, or cancelled
    while waiting for it), and when paho raises from a read or write callback (aiomqtt then
    only marks the link disconnected): every retry would leak a socket and a task. paho's
    ``_sock_close`` unregisters the socket through aiomqtt's callbacks, which also cancels
    that task. Both are private: there is no public way in aiomqtt <3 / paho <3.
    """
    client._client._sock_close()


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails.

    paho 2.2 (``Client._ssl_wrap_socket``) drops the socket without closing it when the
    handshake fails (wrong CA, no client certificate): each retry would leave a socket for the
    garbage collector and a ``ResourceWarning``.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(tls.ca_file) if tls.ca_file else None)
    context.sslsocket_class = _ClosingSSLSocket
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure:
        context.check_hostname = False
    return context
