"""How the outbox commits: life-safety writes first and together, on disk before a publisher
sees them, and nothing acknowledged lost when the process is SIGKILLed mid group commit or
right after the platform received a work order."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.outbox import Outbox, OutboxItem
from gateway.outbox._store import Insert, Op, SaveSnapshot
from tests.drill_support import (
    gateway,
    mqtt_platform,
    mqtt_upstream,
    outbox_state,
    set_trapped,
    site_config,
)
from tests.support import Mosquitto, free_port

TARGETS = {"mqtt": {"work-orders", "alarms", "telemetry"}}
ROOT = Path(__file__).resolve().parent.parent


def work_order(n: int) -> OutboxItem:
    return OutboxItem(kind="work_order", channel="work-orders", key=f"wo{n}:1", payload=b"w",
                      priority="P0", snapshot=(f"wo{n}", f'{{"n": {n}}}', True))


def p0_alarm(n: int) -> OutboxItem:
    return OutboxItem(kind="alarm", channel="alarms", key=f"a{n}", payload=b"a", priority="P0")


def telemetry(n: int) -> OutboxItem:
    return OutboxItem(kind="telemetry", channel="telemetry", key=f"t{n}", payload=b"t")


class Transactions:
    """Records what each transaction of the real store held; ``hold`` blocks the next one
    that writes a work order until ``release``."""

    def __init__(self, outbox: Outbox) -> None:
        self.seen: list[tuple[list[str], bool]] = []
        self.hold = False
        self.entered = threading.Event()
        self.released = threading.Event()
        store = outbox._store  # observed (the real store still writes), not replaced
        apply = store.apply

        def spy(ops: Sequence[Op], *, durable: bool) -> None:
            if self.hold and any(isinstance(op, Insert) and op.kind == "work_order"
                                 for op in ops):
                self.entered.set()
                assert self.released.wait(10), "never released"
            apply(ops, durable=durable)
            self.seen.append((_keys(ops), durable))

        store.apply = spy  # type: ignore[method-assign]


def _keys(ops: Sequence[Op]) -> list[str]:
    return [op.key if isinstance(op, Insert) else f"snapshot:{op.order_id}"
            for op in ops if isinstance(op, Insert | SaveSnapshot)]


async def test_life_safety_writes_go_first_in_one_fsynced_transaction(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        spy = Transactions(outbox)
        routine = [outbox.submit(telemetry(n)) for n in range(200)]
        # As the gateway does: the alarm message queued, then the work order it raises.
        alarm = outbox.submit(p0_alarm(1))
        order = outbox.submit(work_order(1))
        await asyncio.gather(alarm, order, *routine)
    urgent, rest = spy.seen[0], spy.seen[1:]
    assert urgent == (["a1", "snapshot:wo1", "wo1:1"], True), \
        "the alarm message and its work order: one transaction, fsync'ed, ahead of telemetry"
    assert [key for keys, _ in rest for key in keys] == [f"t{n}" for n in range(200)]
    assert all(not durable for _, durable in rest), "routine writes do not pay an fsync"


async def test_a_message_reaches_the_publisher_only_once_committed(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, targets=TARGETS, clock=fake_clock) as outbox:
        spy = Transactions(outbox)
        spy.hold = True
        stored = outbox.submit(work_order(1))
        publisher = asyncio.ensure_future(outbox.next("mqtt"))
        await asyncio.to_thread(spy.entered.wait, 10)
        assert spy.entered.is_set()
        for _ in range(20):  # the commit is held on the disk: nothing may be handed out
            await asyncio.sleep(0)
        assert not publisher.done() and not stored.done()
        spy.released.set()
        env = await asyncio.wait_for(publisher, 10)
        assert env.key == "wo1:1" and env.durable
        assert spy.seen == [(["snapshot:wo1", "wo1:1"], True)]
        assert (await stored) is env
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT key FROM message").fetchall() == [("wo1:1",)]
    finally:
        conn.close()


@pytest.mark.slow
async def test_sigkill_during_group_commits_loses_no_acknowledged_work_order(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.outbox_child", str(path), "5000", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(40):
            while len(acknowledged) < 400:  # 20 bursts of group commits, then no warning
                line = (await proc.stdout.readline()).decode().strip()
                assert line and line != "done", "the writer finished before it was killed"
                acknowledged.append(line)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(15):
            await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    try:
        stored = {key for (key,) in conn.execute(
            "SELECT key FROM message WHERE kind = 'work_order'")}
        snapshots = {order for (order,) in conn.execute("SELECT id FROM snapshot")}
    finally:
        conn.close()
    missing = [key for key in acknowledged if key not in stored]
    assert missing == [], f"{len(missing)} acknowledged work order(s) lost: {missing[:5]}"
    assert {key.split(":")[0] for key in acknowledged} <= snapshots
    # And the outbox itself reads them back as undelivered.
    async with Outbox(path, targets={"mqtt": {"work-orders"}, "platform-tsdb": {"telemetry"}},
                      clock=FakeClock()) as outbox:
        keys = set()
        while outbox.pending("mqtt"):
            env = await outbox.next("mqtt")
            keys.add(env.key)
            outbox.delivered("mqtt", env)
    assert set(acknowledged) <= keys


@pytest.mark.mosquitto
@pytest.mark.slow
@pytest.mark.drill
async def test_a_work_order_the_platform_has_is_in_the_outbox_file_when_sigkilled(
        tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "up").mkdir()
    devices, upstream = Mosquitto(tmp_path / "dev"), Mosquitto(tmp_path / "up")
    config = site_config(tmp_path, devices_port=devices.port, elevators=3,
                         upstream=mqtt_upstream(upstream.port), status_port=free_port())
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port) as platform, gateway(config) as gw:
            await gw.start()
            await gw.wait_for(r"mqtt\[upstream\]: connected")
            await set_trapped(devices.port, {1: 1, 2: 1, 3: 1})
            async with asyncio.timeout(20):
                while not platform.orders():
                    await asyncio.sleep(0.002)
            await gw.kill()  # at once: no cleanup, like a power cut
            received = {o["id"]: o["seq"] for o in platform.orders()}
    saved, _ = outbox_state(tmp_path / "state")
    assert received, "the platform received a work order before the kill"
    # The open order's state is committed with the message itself, before it is sent.
    assert {i: saved.get(i) for i in received} == received
