"""The durable outbox: work orders are on disk before anything is sent.

Every message is committed to SQLite (WAL) before any publisher can see it, and stays there
until each of its targets (``mqtt``, ``http``) has confirmed delivery, so a crash, a power cut or
an outage delays a message but never loses it. Delivery is at least once: the platform
de-duplicates on the message key (work-order id and ``seq``).

Ordering: each target takes the highest-priority message first (P0 before P1 ... before
telemetry) and, within a priority, the oldest first.

Back-pressure, decided per kind: the outbox is bounded by message count and payload bytes;
beyond the bound, telemetry and then non-life-safety alarm messages are shed (oldest first, the
drops counted and logged once). Work orders and P0 alarm messages are never shed: they are
accepted past the bound, and the health says so.

Storage failures (disk full, read-only file, I/O errors) are loud: one CRITICAL log line per
episode and ``health().storage_error``. The messages are then held in memory and still
delivered; they, and the latest snapshot of every work order changed meanwhile (what a restart
needs to carry on without raising a second order), are written as soon as the disk accepts
them, retried every few seconds. The failure counts as over only when a write that grows the
file succeeds (a probe, if nothing else is waiting): confirmations alone free space and prove
nothing on a full disk.

A file whose *content* cannot be read (garbage, damaged pages, a newer propgw's layout) is moved
aside (kept, named at CRITICAL and in ``health().replaced``), whatever can still be read from it
is carried over, and a fresh durable file takes its place. Only when the file cannot be opened
at all (permissions, a read-only disk, another gateway holding it) does the outbox run in
memory (``health().durable`` is False).

All SQLite work runs on the outbox's own worker thread (not the shared default pool, where it
would queue behind other stages' disk work) behind one writer task, so the event loop never
waits on the disk. The writer batches what is queued into one transaction (group commit: one
fsync for a batch). Life-safety writes (work orders, their snapshots, P0 alarm messages) go
first: each round commits them in their own fsync'ed transaction before any routine write
(telemetry, other alarm messages, delivery confirmations), so a work order waits for at most the
one routine transaction already on the disk, never behind a queue of them. A message is handed
to the publishers by the writer the moment its transaction is committed.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from gateway.aio import first_of
from gateway.clock import Clock
from gateway.outbox._store import (
    Done,
    Flush,
    Insert,
    Loaded,
    Op,
    Park,
    Probe,
    SaveSnapshot,
    Shed,
    Store,
    Unpark,
    salvage,
)
from gateway.statefiles import is_unreadable, join_worker, quarantine

__all__ = ["PRIORITY_RANK", "Envelope", "Outbox", "OutboxHealth", "OutboxItem"]

log = logging.getLogger(__name__)

Kind = Literal["work_order", "alarm", "telemetry"]

#: Send order: lower first. Telemetry goes after every alarm priority.
PRIORITY_RANK: dict[str, int] = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
_TELEMETRY_RANK = 4
_T = TypeVar("_T")
#: Routine writes per transaction, at most (life-safety writes are never held back by this).
_BATCH = 500
_STORAGE_RETRY = 5.0
_CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """What a stage hands to the outbox.

    Attributes:
        kind: ``work_order`` (never shed), ``alarm`` or ``telemetry``.
        channel: Logical destination; each publisher maps it to a topic or URL. A target
            that takes ``telemetry`` also takes ``telemetry/<device>`` (its first segment).
        key: Idempotency key, stable across re-sends (work orders: ``<id>:<seq>``).
        payload: The bytes sent (JSON).
        priority: ``P0``..``P3``; decides the send order.
        snapshot: ``(order id, JSON, still open)``: the work order's latest state, kept so the
            desk can carry on after a restart.
    """

    kind: Kind
    channel: str
    key: str
    payload: bytes
    priority: str = "P3"
    snapshot: tuple[str, str, bool] | None = None


@dataclass(eq=False, slots=True)
class Envelope:
    """A stored message, as a publisher receives it from :meth:`Outbox.next`."""

    id: int
    kind: str
    rank: int
    channel: str
    key: str
    payload: bytes
    created: float
    pending: set[str] = field(default_factory=set)
    parked: dict[str, str] = field(default_factory=dict)
    durable: bool = False
    #: Monotonic time it was queued (for a message loaded at start: estimated from ``created``),
    #: so that its age survives wall-clock steps.
    queued: float = 0.0

    @property
    def life_safety(self) -> bool:
        return self.kind == "work_order" or self.rank == 0

    @property
    def shed_class(self) -> int | None:
        """Lower is shed first; None is never shed."""
        if self.life_safety:
            return None
        return 0 if self.kind == "telemetry" else 4 - self.rank


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    """What other stages (console, ``/healthz``) show about the outbox."""

    path: str | None
    #: False when the file could not be opened and messages live in memory only.
    durable: bool
    #: The last storage failure (disk full, read-only, I/O) while it lasts, else None.
    storage_error: str | None
    #: Messages waiting, per target.
    pending: dict[str, int]
    #: Messages a target refused for good (HTTP 4xx), per target: need a person.
    parked: dict[str, int]
    #: Messages shed because the outbox was full, since start.
    shed: int
    #: The outbox holds more than its bound (only work orders and P0 alarms are left).
    over_bound: bool
    #: Where an unreadable file found at start-up was moved (a person should look at it).
    replaced: str | None = None

    @property
    def ok(self) -> bool:
        return self.durable and self.storage_error is None


@dataclass(slots=True)
class _Pending:
    op: Op
    #: Resolved once written: True when it is on disk (a flush's waiter).
    future: asyncio.Future[bool] | None = None
    #: The message an Insert stores, and who waits for it: queued for the publishers and
    #: resolved by the writer once its transaction is committed.
    env: Envelope | None = None
    stored: asyncio.Future[Envelope | None] | None = None

    @property
    def urgent(self) -> bool:
        """A life-safety write: committed ahead of routine ones."""
        op = self.op
        return isinstance(op, SaveSnapshot) or (
            isinstance(op, Insert) and (op.kind == "work_order" or op.rank == 0))


_STOP = object()


class Outbox:
    """Durable, bounded, prioritised queue from the work-order desk to the publishers.

    Use as ``async with outbox:``: entering opens the file and loads what a previous run left
    unsent; leaving writes the last confirmations and closes it.

    Args:
        path: SQLite file; None keeps everything in memory (tests, no state directory).
        targets: Target name -> the channels it takes, e.g. ``{"mqtt": {"work-orders",
            "alarms"}}``.
        clock: For message timestamps and the storage retry timer.
        max_messages: Bound on queued messages (see the module docstring for shedding).
        max_bytes: Bound on queued payload bytes.
        max_file_bytes: Hard cap on the SQLite file; writes past it fail like a full disk.
        snapshot_max_age: Work-order snapshots older than this are dropped on start-up.

    Raises:
        ValueError: no targets, or a bound below 1.
    """

    def __init__(self, path: Path | None, *, targets: Mapping[str, Collection[str]],
                 clock: Clock, max_messages: int = 50_000, max_bytes: int = 64 * 1024 * 1024,
                 max_file_bytes: int | None = None,
                 snapshot_max_age: float = 7 * 86400.0) -> None:
        if not targets:
            raise ValueError("an outbox needs at least one target")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(f"outbox bounds must be >= 1 (max_messages={max_messages}, "
                             f"max_bytes={max_bytes})")
        self._path = path
        self._targets = {name: frozenset(channels) for name, channels in targets.items()}
        self._clock = clock
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._snapshot_max_age = snapshot_max_age
        self._store = Store(path, max_file_bytes=max_file_bytes)
        self._durable = path is not None
        self._messages: dict[int, Envelope] = {}
        self._by_key: dict[str, int] = {}
        self._bytes = 0
        self._heaps: dict[str, list[tuple[int, int]]] = {t: [] for t in self._targets}
        self._ready: dict[str, asyncio.Event] = {t: asyncio.Event() for t in self._targets}
        self._sheddable: dict[int, collections.deque[int]] = collections.defaultdict(
            collections.deque)
        self._volatile: dict[int, Insert] = {}
        self._volatile_snapshots: dict[str, SaveSnapshot] = {}
        self._replaced: str | None = None
        #: Writes waiting for the writer: life-safety ones, and the rest in order (and _STOP).
        self._urgent: collections.deque[_Pending] = collections.deque()
        self._ops: collections.deque[_Pending | object] = collections.deque()
        self._wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._writer: asyncio.Task[None] | None = None
        self._next_id = 1
        self._storage_error: str | None = None
        self._shed = 0
        #: Messages shed since start, by kind (``telemetry``, ``alarm``).
        self.shed_by_kind: collections.Counter[str] = collections.Counter()
        self._over_bound = False
        self.snapshots: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Outbox:
        if self._writer is not None:
            raise RuntimeError("outbox is already open")
        since = self._clock.time() - self._snapshot_max_age
        carried: Loaded | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        try:
            try:
                try:
                    loaded = await self._call(lambda: self._store.open(snapshots_since=since))
                except sqlite3.Error as exc:
                    if self._path is None or not is_unreadable(exc):
                        raise
                    carried = await self._call(functools.partial(self._replace, exc))
                    loaded = await self._call(lambda: self._store.open(snapshots_since=since))
            except (sqlite3.Error, OSError) as exc:
                log.critical("outbox %s cannot be opened (%s): work orders are kept IN MEMORY "
                             "ONLY and are lost if the gateway stops", self._path, exc)
                self._store = Store(None)
                self._durable = False
                loaded = await self._call(lambda: self._store.open(snapshots_since=since))
        except BaseException:
            # Cancelled (or failed) while the outbox's thread may still be opening the store:
            # close it there, after that, so no connection outlives an outbox never opened.
            if self._executor is not None:
                self._executor.submit(self._store.close)
            await self._shutdown_executor()
            raise
        if carried is not None:
            loaded = _merge(loaded, carried)
        self._load(loaded, carried=carried is not None)
        self._writer = asyncio.create_task(self._write_loop(), name="outbox.writer")
        self._writer.add_done_callback(_log_crash)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        # Shielded and time-boxed: the last delivery confirmations are worth writing even
        # while cancelled, but a hung disk must not hold up shutdown.
        self._ops.append(_STOP)
        self._wake.set()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.shield(writer)
        except TimeoutError:
            log.warning("outbox: last writes did not finish within %.1fs; they will be sent "
                        "again after the restart", _CLOSE_TIMEOUT)
            await _cancel(writer)
        except asyncio.CancelledError:
            await _cancel(writer)
            await asyncio.shield(self._close_store())
            raise
        await asyncio.shield(self._close_store())

    async def _close_store(self) -> None:
        try:
            await self._call(self._store.close)
        finally:
            await self._shutdown_executor()

    async def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the outbox's own thread (never the shared default pool)."""
        if self._executor is None:
            raise RuntimeError("outbox is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _shutdown_executor(self) -> None:
        executor, self._executor = self._executor, None
        await join_worker(executor)

    def _replace(self, exc: sqlite3.Error) -> Loaded:
        """Move the unreadable file aside and read what can still be read from it."""
        assert self._path is not None
        moved = quarantine(self._path, self._clock.time())
        carried = salvage(moved)
        self._replaced = str(moved)
        log.critical("outbox %s cannot be read (%s): moved to %s and replaced by a fresh file; "
                     "%d undelivered message(s) and %d work-order snapshot(s) could be carried "
                     "over", self._path, exc, moved, len({r.id for r in carried.rows}),
                     len(carried.snapshots))
        return carried

    def _load(self, loaded: Loaded, *, carried: bool = False) -> None:
        self._next_id = loaded.next_id
        self.snapshots = loaded.snapshots
        wall, mono = self._clock.time(), self._clock.monotonic()
        writes: list[Op] = []
        for row in loaded.rows:
            if row.target not in self._targets:
                if not carried:
                    writes.append(Done(row.id, row.target))
                continue
            env = self._messages.get(row.id)
            if env is None:
                env = Envelope(row.id, row.kind, row.rank, row.channel, row.key, row.payload,
                               row.created, durable=not carried,
                               queued=mono - max(0.0, wall - row.created))
                self._add(env)
            env.pending.add(row.target)
            if row.parked is not None:
                env.parked[row.target] = row.parked
            else:
                heapq.heappush(self._heaps[row.target], (env.rank, env.id))
        if carried:  # what came from the replaced file goes into the fresh one
            for env in self._messages.values():
                writes.append(Insert(env.id, env.kind, env.rank, env.channel, env.key,
                                     env.payload, env.created, tuple(sorted(env.pending))))
                writes += [Park(env.id, t, why) for t, why in env.parked.items()]
            writes += [snap for body in self.snapshots
                       if (snap := _snapshot_op(body, wall)) is not None]
        for op in writes:
            self._enqueue(_Pending(op))
        stale = sum(1 for op in writes if isinstance(op, Done))
        if stale:
            log.warning("outbox: %d delivery(ies) to targets no longer configured dropped",
                        stale)
        if self._messages:
            log.info("outbox: %d message(s) left by the previous run will be sent again",
                     len(self._messages))
        for target in self._targets:
            self._ready[target].set()

    # ------------------------------------------------------------------ producers

    async def put(self, item: OutboxItem) -> Envelope | None:
        """Store ``item``; returns once it is committed (or held in memory on a storage error).

        Returns:
            The stored envelope, or None when no target takes the channel or the item was shed
            because the outbox is full.

        Raises:
            RuntimeError: the outbox is not open.
        """
        # Not shielded: cancelling this cancels only the wait; the writer still stores and
        # hands out the message.
        return await self.submit(item)

    def submit(self, item: OutboxItem) -> asyncio.Future[Envelope | None]:
        """Queue ``item`` for the writer now; the future resolves as :meth:`put` returns.

        Items submitted before the writer next runs share its transaction (one fsync), e.g.
        an alarm message and the work order it raises. The writer hands the message to the
        publishers once it is committed, whether or not anyone awaits the future.

        Raises:
            RuntimeError: the outbox is not open.
        """
        if self._writer is None:
            raise RuntimeError("outbox is not open")
        stored: asyncio.Future[Envelope | None] = asyncio.get_running_loop().create_future()
        # "telemetry/E1" goes to the targets that take "telemetry".
        base = item.channel.split("/", 1)[0]
        targets = tuple(t for t, channels in self._targets.items() if base in channels)
        if not targets:
            stored.set_result(None)
            return stored
        queued = self._by_key.get(item.key)
        if queued is not None and queued in self._messages:
            # The same message again (an upstream stage replaying after a restart): the key
            # is its identity, so it is queued once.
            stored.set_result(self._messages[queued])
            return stored
        rank = _TELEMETRY_RANK if item.kind == "telemetry" else PRIORITY_RANK.get(
            item.priority, 3)
        env = Envelope(self._next_id, item.kind, rank, item.channel, item.key, item.payload,
                       self._clock.time(), pending=set(targets),
                       queued=self._clock.monotonic())
        self._next_id += 1
        if not self._make_room(env):
            stored.set_result(None)
            return stored
        self._add(env)
        op = Insert(env.id, env.kind, env.rank, env.channel, env.key, env.payload, env.created,
                    targets)
        if item.snapshot is not None:
            order_id, body, still_open = item.snapshot
            self._enqueue(_Pending(SaveSnapshot(order_id, body, still_open, env.created)))
        self._enqueue(_Pending(op, env=env, stored=stored))
        return stored

    async def flush(self) -> None:
        """Wait until every write queued so far has been attempted."""
        if self._writer is None:
            return
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(Flush(), future))
        await asyncio.shield(future)

    # ------------------------------------------------------------------ consumers

    async def next(self, target: str) -> Envelope:
        """The message ``target`` should send now: highest priority, then oldest.

        It stays queued until :meth:`delivered` or :meth:`park`; calling ``next`` again without
        either returns it again (or a more urgent one that arrived meanwhile).
        """
        heap = self._heaps[target]
        while True:
            while heap and not self._waiting(heap[0][1], target):
                heapq.heappop(heap)
            if heap:
                return self._messages[heap[0][1]]
            self._ready[target].clear()
            await self._ready[target].wait()

    def delivered(self, target: str, env: Envelope) -> None:
        """``target`` has confirmed ``env`` (PUBACK, HTTP 2xx): forget it for that target."""
        if target not in env.pending:
            return
        env.pending.discard(target)
        env.parked.pop(target, None)
        # What was handed over, by key: to tell a message lost after its confirmation (a
        # broker killed before it saved) from one the gateway never sent.
        log.debug("outbox: %s confirmed %s %s", target, env.kind, env.key)
        if not env.pending:
            self._remove(env)
        self._enqueue(_Pending(Done(env.id, target)))

    def park(self, target: str, env: Envelope, reason: str) -> None:
        """``target`` refused ``env`` for good (HTTP 4xx): keep it, but stop sending it."""
        if target not in env.pending or target in env.parked:
            return
        env.parked[target] = reason
        log.error("outbox: %s refused %s %s for good and it is parked: %s", target, env.kind,
                  env.key, reason)
        self._enqueue(_Pending(Park(env.id, target, reason)))

    def retry_parked(self, target: str) -> int:
        """Queue every parked message of ``target`` again (after the cause was fixed)."""
        count = 0
        for env in list(self._messages.values()):
            if env.parked.pop(target, None) is not None:
                heapq.heappush(self._heaps[target], (env.rank, env.id))
                self._enqueue(_Pending(Unpark(env.id, target)))
                count += 1
        if count:
            self._ready[target].set()
        return count

    def parked(self, target: str) -> list[tuple[Envelope, str]]:
        """Messages ``target`` refused, with the reason."""
        return [(e, e.parked[target]) for e in self._messages.values() if target in e.parked]

    def pending(self, target: str) -> int:
        """Messages ``target`` still has to send (parked ones excluded)."""
        return sum(1 for e in self._messages.values()
                   if target in e.pending and target not in e.parked)

    def oldest_pending(self, target: str) -> Envelope | None:
        """The message ``target`` has been waiting to send the longest (parked ones excluded)."""
        # Ids grow with time and the dict keeps insertion order (loaded in id order), so the
        # first match is the oldest; it is nearly always the first entry.
        for env in self._messages.values():
            if target in env.pending and target not in env.parked:
                return env
        return None

    def health(self) -> OutboxHealth:
        """A snapshot of the outbox's state for health checks."""
        return OutboxHealth(
            path=str(self._path) if self._path else None, durable=self._durable,
            storage_error=self._storage_error,
            pending={t: self.pending(t) for t in self._targets},
            parked={t: len(self.parked(t)) for t in self._targets},
            shed=self._shed, over_bound=self._over_bound, replaced=self._replaced)

    # ------------------------------------------------------------------ bookkeeping

    def _waiting(self, env_id: int, target: str) -> bool:
        env = self._messages.get(env_id)
        return env is not None and target in env.pending and target not in env.parked

    def _add(self, env: Envelope) -> None:
        self._messages[env.id] = env
        self._by_key[env.key] = env.id
        self._bytes += len(env.payload)
        if env.shed_class is not None:
            self._sheddable[env.shed_class].append(env.id)

    def _remove(self, env: Envelope) -> None:
        if self._messages.pop(env.id, None) is not None:
            self._bytes -= len(env.payload)
            if self._by_key.get(env.key) == env.id:
                del self._by_key[env.key]
            self._volatile.pop(env.id, None)

    def _full(self, extra: int) -> bool:
        return (len(self._messages) + 1 > self._max_messages
                or self._bytes + extra > self._max_bytes)

    def _make_room(self, env: Envelope) -> bool:
        """Shed until ``env`` fits; False when ``env`` itself is the one to shed."""
        while self._full(len(env.payload)):
            victim = self._victim()
            mine = env.shed_class
            theirs = victim.shed_class if victim is not None else None
            if mine is not None and (theirs is None or mine < theirs):
                self._count_shed(env)
                return False
            if victim is None:
                if not self._over_bound:
                    log.warning("outbox: over its bound (%d messages, %d bytes) with nothing "
                                "left to shed; work orders are still accepted",
                                len(self._messages), self._bytes)
                self._over_bound = True
                return True
            self._remove(victim)
            self._count_shed(victim)
            self._enqueue(_Pending(Shed(victim.id)))
        self._over_bound = False
        return True

    def _victim(self) -> Envelope | None:
        for shed_class in sorted(self._sheddable):
            queue = self._sheddable[shed_class]
            while queue:
                env = self._messages.get(queue[0])
                if env is not None:
                    return env
                queue.popleft()
        return None

    def _count_shed(self, env: Envelope) -> None:
        self._shed += 1
        self.shed_by_kind[env.kind] += 1
        if self._shed == 1:
            log.warning("outbox: full (%d messages, %d bytes); shedding %s messages, oldest "
                        "first (counted in health, logged once)", len(self._messages),
                        self._bytes, env.kind)

    # ------------------------------------------------------------------ the writer

    def _enqueue(self, pending: _Pending) -> None:
        (self._urgent if pending.urgent else self._ops).append(pending)
        self._wake.set()

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            await self._work()
            if self._urgent and self._storage_error is None:
                # Life-safety first, in a transaction of their own; any that arrive while it
                # is on the disk go next, still ahead of the routine writes.
                batch = list(self._urgent)
                self._urgent.clear()
                await self._commit(batch)
                continue
            batch, stopping = self._take_routine()
            if self._storage_error is not None:
                # The disk refuses writes: one attempt (and probe) for everything.
                batch = [*self._urgent, *batch]
                self._urgent.clear()
            if batch or self._storage_error is not None:
                await self._commit(batch)

    async def _work(self) -> None:
        """Return when writes are queued, or (storage failed earlier) when it is time to try
        the disk again even if nothing new arrived."""
        while not (self._urgent or self._ops):
            self._wake.clear()
            if self._storage_error is None:
                await self._wake.wait()
            else:
                await first_of(self._wake.wait(), self._clock.sleep(_STORAGE_RETRY))
                return

    def _take_routine(self) -> tuple[list[_Pending], bool]:
        batch: list[_Pending] = []
        stopping = False
        while self._ops and len(batch) < _BATCH:
            item = self._ops.popleft()
            if item is _STOP:
                stopping = True
            elif isinstance(item, _Pending):
                batch.append(item)
        return batch, stopping

    async def _commit(self, batch: list[_Pending]) -> None:
        retry: list[Op] = [op for env_id, op in self._volatile.items()
                           if env_id in self._messages]
        retry += self._volatile_snapshots.values()
        ops: list[Op] = [*retry, *(p.op for p in batch)]
        if self._storage_error is not None:
            ops.append(Probe())
        growing = [op for op in ops if isinstance(op, Insert | SaveSnapshot | Probe)]
        durable = any(isinstance(op, SaveSnapshot) or (isinstance(op, Insert) and (
            op.kind == "work_order" or op.rank == 0)) for op in ops)
        error: sqlite3.Error | None = None
        try:
            await self._call(lambda: self._store.apply(ops, durable=durable))
        except sqlite3.Error as exc:
            error = exc
            # Confirmations and sheds free space: never let writes that do not fit hold them
            # back, or a full disk could never drain; then try the rest once more.
            others = [op for op in ops if not isinstance(op, Insert | SaveSnapshot | Probe)]
            if others:
                try:
                    await self._call(lambda: self._store.apply(others, durable=False))
                    await self._call(lambda: self._store.apply(growing, durable=durable))
                    error = None
                except sqlite3.Error as again:
                    error = again
        if error is not None:
            self._storage_failed(error, growing)
            self._resolve(batch, ok=False)
            return
        if self._storage_error is not None:
            log.warning("outbox: storage works again; %d message(s) and %d work-order "
                        "snapshot(s) held in memory are now on disk",
                        sum(1 for op in retry if isinstance(op, Insert)),
                        len(self._volatile_snapshots))
        self._storage_error = None
        self._volatile.clear()
        self._volatile_snapshots.clear()
        for op in retry:
            env = self._messages.get(op.id) if isinstance(op, Insert) else None
            if env is not None:
                env.durable = self._durable
        self._resolve(batch, ok=self._durable)

    def _resolve(self, batch: list[_Pending], *, ok: bool) -> None:
        for pending in batch:
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(ok)
            env = pending.env
            if env is None:
                continue
            env.durable = ok
            # The producer resumes before any publisher sees the message, as when it queued
            # the message itself (its bookkeeping, e.g. counters, comes first).
            if pending.stored is not None and not pending.stored.done():
                pending.stored.set_result(env)
            if env.id in self._messages:  # not shed while it was being written
                for target in env.pending:
                    heapq.heappush(self._heaps[target], (env.rank, env.id))
                    self._ready[target].set()

    def _storage_failed(self, exc: sqlite3.Error, unwritten: Sequence[Op]) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self._storage_error is None:
            log.critical("outbox: cannot write %s (%s): messages are held in memory and still "
                         "delivered, but are LOST if the gateway stops before the disk "
                         "recovers", self._path or "(memory)", reason)
        self._storage_error = reason
        for op in unwritten:
            if isinstance(op, Insert) and op.id in self._messages:
                self._volatile[op.id] = op
            elif isinstance(op, SaveSnapshot):  # the latest state of each order wins
                self._volatile_snapshots[op.order_id] = op


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _merge(fresh: Loaded, carried: Loaded) -> Loaded:
    """A fresh file's content (normally nothing) plus what was carried over from the old."""
    return Loaded(rows=[*carried.rows, *fresh.rows],
                  snapshots=[*carried.snapshots, *fresh.snapshots],
                  next_id=max([fresh.next_id, *(r.id + 1 for r in carried.rows)]))


def _snapshot_op(body: str, now: float) -> SaveSnapshot | None:
    try:
        order_id = json.loads(body)["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return SaveSnapshot(order_id, body, True, now) if isinstance(order_id, str) else None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("outbox writer crashed: nothing more will be stored",
                     exc_info=task.exception())
