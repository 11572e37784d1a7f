"""Serves an aiohttp application with the limits aiohttp leaves to the application.

aiohttp's server (3.x) accepts every connection it is offered and waits for a request head as
long as its keep-alive timeout allows; it caps head and body sizes, but logs every malformed
request with a full traceback. On a gateway that shares one file-descriptor budget between its
HTTP endpoint, the upstream delivery client, device links and SQLite, a few hundred slow
clients (slowloris) would take that budget: accept() fails with EMFILE, asyncio logs it on
every attempt, and outgoing work orders cannot open a socket.

:class:`GuardedHttpServer` runs its own accept loop in front of aiohttp's request handler:

* **Connection cap** (``max_connections``). At the cap, the oldest connection that has not yet
  delivered a complete request head (or whose request was refused) is closed to make room: a
  slow or idle client gives way to a fresh one, whose head normally arrives within a round
  trip. If every connection is in a request, the new connection is closed at once. Either way
  the process never holds more than the cap, and the log says so once per episode, not per
  connection.
* **Head deadline** (``header_timeout``): a connection's first request head, TLS handshake
  included, must arrive within it. Later requests on a kept-alive connection must arrive
  within ``keepalive_timeout`` of the previous response (aiohttp's own timer).
* **Authorise, then read the body** (``body_timeout``, ``max_body_size``): the ``authorize``
  hook runs before a byte of the body is read, so an unauthenticated client gets its 401
  without being waited for; an authorised body must arrive in time (else 408) and fit (else
  413). Every 4xx/5xx answer closes its connection, so no failed client keeps a slot.
* **Short logs**: a malformed or oversized head (aiohttp answers 400) is one WARNING line,
  at most one per minute with a count of the rest; no traceback.
* **File descriptors**: an accept() failing for lack of descriptors or memory is logged once
  per episode and retried after a second, instead of in a tight loop.

Deadlines run on the event loop's clock, as aiohttp's own keep-alive timer does: they guard
sockets, not domain time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config import HttpServerLimits
from gateway.logs import LogLimiter, one_line

__all__ = ["Authorizer", "GuardedHttpServer"]

log = logging.getLogger(__name__)
#: aiohttp's request handlers log here; see _ClientErrorLog.
_handler_log = logging.getLogger(f"{__name__}.requests")

#: Decides whether a request may go on (None: yes; else the answer to send); awaited before
#: its body is read.
Authorizer = Callable[[web.Request], Awaitable[web.Response | None]]

_CLEANUP_TIMEOUT = 1.0
#: How long an unread request body is drained after an error answer, so the client can read
#: the answer before the connection closes.
_LINGER = 1.0
_ACCEPT_RETRY = 1.0
_BACKLOG = 128
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class GuardedHttpServer:
    """One TCP listener serving :attr:`app` within ``limits``; runs until cancelled.

    Add routes to :attr:`app` before :meth:`run`.

    Args:
        name: Shown in log lines, e.g. ``status API``.
        host: Listen address.
        port: Listen port; 0 picks a free one (see :attr:`port`).
        limits: Connections, deadlines and sizes.
        authorize: Returns an error response for a request that may not go on, None to let
            it through; called before the body is read.
        ssl_context: Serve HTTPS.
    """

    def __init__(self, *, name: str, host: str, port: int, limits: HttpServerLimits,
                 authorize: Authorizer | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._name = name
        self._host, self._wanted_port = host, port
        self._limits = limits
        self._authorize = authorize
        #: Serve HTTPS with this; may be set until :meth:`run`.
        self.ssl_context = ssl_context
        #: Held connections, oldest first.
        self._open: dict[_Connection, None] = {}
        self._saturated = False
        self._closed_early = self._refused = 0
        self._starved = False
        #: The application; add its routes before :meth:`run`.
        self.app = web.Application(client_max_size=int(limits.max_body_size),
                                   middlewares=[self._guard])
        #: The bound port once serving.
        self.port: int | None = None
        self.serving = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def limits(self) -> HttpServerLimits:
        return self._limits

    @property
    def open_connections(self) -> int:
        """Connections currently held (never more than ``max_connections``)."""
        return len(self._open)

    async def run(self) -> None:
        """Listen and serve until cancelled; connections are closed on the way out."""
        limits = self._limits
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, logger=_handler_log,
            shutdown_timeout=_CLEANUP_TIMEOUT, keepalive_timeout=limits.keepalive_timeout,
            max_line_size=int(limits.max_header_size),
            max_field_size=int(limits.max_header_size), max_headers=limits.max_headers,
            lingering_time=_LINGER)
        await runner.setup()
        try:
            server = runner.server
            assert server is not None  # set by setup()
            with _listen(self._host, self._wanted_port) as sock:
                self.port = int(sock.getsockname()[1])
                log.info("%s listening on %s://%s:%d (at most %d connections)", self._name,
                         "https" if self.ssl_context else "http", self._host, self.port,
                         limits.max_connections)
                self.serving.set()
                async with asyncio.TaskGroup() as tg:
                    await self._accept_forever(sock, server, tg)
        finally:
            self.serving.clear()
            for conn in list(self._open):
                conn.abort()
            # Shielded and time-boxed: close the connections even while being cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLEANUP_TIMEOUT):
                    await asyncio.shield(runner.cleanup())

    # -- connections

    async def _accept_forever(self, sock: socket.socket,
                              protocol_factory: Callable[[], asyncio.Protocol],
                              tg: asyncio.TaskGroup) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(sock)
            except ConnectionAbortedError:
                continue  # the client gave up while it waited in the backlog
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                if not self._starved:
                    log.warning("%s: cannot accept connections: %s; retrying every %g s",
                                self._name, exc, _ACCEPT_RETRY)
                    self._starved = True
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            if self._starved:
                log.info("%s: accepting connections again", self._name)
                self._starved = False
            if self._make_room():
                conn = _Connection(self, protocol_factory(), client,
                                   loop.time() + self._limits.header_timeout)
                self._open[conn] = None
                tg.create_task(self._start(conn, client), name=f"{self._name}.connection")
            else:
                _close_now(client)
            # A burst of connects must not starve the connections already accepted.
            await asyncio.sleep(0)

    def _make_room(self) -> bool:
        """True if one more connection may be held, after closing an idle one if need be."""
        cap = self._limits.max_connections
        if len(self._open) < cap:
            return True
        if not self._saturated:
            self._saturated = True
            log.warning("%s: %d connections open, the limit (max_connections); closing the "
                        "oldest that have not sent a request, refusing new ones while every "
                        "connection is busy", self._name, cap)
        victim = next((c for c in self._open if not c.head_seen), None)
        if victim is None:
            self._refused += 1
            return False
        self._closed_early += 1
        victim.abort()
        self._release(victim)
        return True

    async def _start(self, conn: _Connection, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: conn, client, ssl=self.ssl_context,
                ssl_handshake_timeout=self._limits.header_timeout if self.ssl_context else None)
        except OSError as exc:  # TLS handshake failed or timed out, peer gone
            log.debug("%s: connection dropped before its first request: %s", self._name, exc)
            _close_now(client)
            self._release(conn)

    def _release(self, conn: _Connection) -> None:
        if conn not in self._open:
            return
        del self._open[conn]
        if self._saturated and len(self._open) <= self._limits.max_connections // 2:
            self._saturated = False
            log.info("%s: below the connection limit again (%d closed before sending a "
                     "request, %d refused)", self._name, self._closed_early, self._refused)
            self._closed_early = self._refused = 0

    # -- requests

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        refusal = await self._authorize(request) if self._authorize is not None else None
        if refusal is None and request.can_read_body:
            refusal = await self._read_body(request)
        response = refusal or await handler(request)
        if response.status >= 400:
            # A failed client keeps no slot: the connection closes after this answer, and
            # while aiohttp drains what is left of its body it may be taken over.
            response.force_close()
            for conn in self._open:
                if conn.transport is request.transport:
                    conn.head_seen = False
        return response


    async def _read_body(self, request: web.Request) -> web.Response | None:
        """Read the whole body within the deadline (aiohttp keeps it for the handler's own
        ``read()``); an error answer if it is too slow or too large."""
        limit = int(self._limits.max_body_size)
        too_large = web.json_response({"error": f"request body over {limit} bytes"},
                                      status=413)
        if (request.content_length or 0) > limit:
            _request_log(f"{self._name}: request body from %s over %d bytes; answered 413",
                         request.remote, limit)
            return too_large
        try:
            async with asyncio.timeout(self._limits.body_timeout):
                await request.read()
        except TimeoutError:
            _request_log(f"{self._name}: request body from %s not complete within %g s; "
                         "answered 408", request.remote, self._limits.body_timeout)
            return web.json_response({"error": "request body too slow"}, status=408)
        except web.HTTPRequestEntityTooLarge:
            _request_log(f"{self._name}: request body from %s over %d bytes; answered 413",
                         request.remote, limit)
            return too_large
        if request.content_type == "application/json":
            # aiohttp-pydantic (2.6) answers a JSON body that is not text in its charset with a
            # 500; refuse it here, for every route (found by fuzzing).
            try:
                (await request.read()).decode(request.charset or "utf-8")
            except (UnicodeDecodeError, LookupError):
                return web.json_response({"error": "the body is not text in its charset"},
                                         status=400)
        return None


class _Connection(asyncio.Protocol):
    """Between a transport and aiohttp's protocol: holds a slot, enforces the head deadline."""

    def __init__(self, owner: GuardedHttpServer, inner: asyncio.Protocol,
                 raw: socket.socket, head_due: float) -> None:
        self._owner = owner
        self._inner = inner
        self._raw = raw
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._forwarded = False
        self._tail = b""
        #: A complete request head has arrived and has not been refused: the connection is
        #: doing useful work and is not closed to make room for another.
        self.head_seen = False
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_at(head_due, self._head_late)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def abort(self) -> None:
        """Close at once, in whatever phase (TLS handshake included)."""
        self._closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        else:
            # Still in the TLS handshake: shutting the socket down ends it now.
            with contextlib.suppress(OSError):
                self._raw.shutdown(socket.SHUT_RDWR)

    # -- asyncio.Protocol, forwarded to aiohttp's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._closed:
            self._transport.abort()
            return
        self._forwarded = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.head_seen:
            # A head ends with an empty line: CRLF CRLF, or LF LF from a lax client.
            window = self._tail + data
            if b"\n\r\n" in window or b"\n\n" in window:
                self.head_seen = True
                self._cancel_timer()
            else:
                self._tail = window[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._owner._release(self)  # the owner's bookkeeping, by design
        if self._forwarded:
            self._inner.connection_lost(exc)

    def _head_late(self) -> None:
        self._timer = None
        log.debug("%s: no complete request head within %g s; closing",
                  self._owner.name, self._owner.limits.header_timeout)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _ClientErrorLog(logging.Filter):
    """On aiohttp's request-handler logger: a client's malformed request becomes one short
    WARNING, at most one per minute (plus a count); a handler's own failure keeps its
    traceback, since that is a bug of ours."""

    def __init__(self) -> None:
        super().__init__()
        self._limiter = LogLimiter(window=60.0, max_window=600.0)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        status = exc.code or 400
        record.msg, record.args = "bad request from %s, answered %d: %s", (
            record.args[0] if isinstance(record.args, tuple) and record.args else "?",
            status, _gist(exc.message))
        record.exc_info = None
        one_line(record)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        allowed, summaries = self._limiter.admit((record.name, "bad request"), record)
        for summary in summaries:
            _handler_log.handle(summary)
        return allowed


_handler_log.addFilter(_ClientErrorLog())
_request_limiter = LogLimiter(window=60.0, max_window=600.0)


def _request_log(msg: str, *args: object) -> None:
    """A WARNING about one client's request, at most one per minute per kind (plus a count)."""
    record = _handler_log.makeRecord(_handler_log.name, logging.WARNING, __file__, 0, msg, args,
                                     None)
    if not _handler_log.isEnabledFor(logging.WARNING):
        return
    allowed, summaries = _request_limiter.admit((record.name, msg), record)
    for summary in summaries:
        _handler_log.handle(summary)
    if allowed:
        _handler_log.handle(record)


def _gist(message: str) -> str:
    """The parser's complaint without the offending bytes it quotes (up to kilobytes)."""
    return message.strip().split("\n", 1)[0].split(": b'", 1)[0].split(': b"', 1)[0][:160]


def _close_now(client: socket.socket) -> None:
    """Close without lingering: the peer gets a reset, the descriptor is free at once."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@contextlib.contextmanager
def _listen(host: str, port: int) -> Iterator[socket.socket]:
    sock = socket.create_server((host, port), backlog=_BACKLOG)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()
