"""A process that fills an outbox with concurrent writes, for the SIGKILL test in
tests/test_outbox_commits.py.

Run as ``python -m tests.outbox_child <file> <bursts>``: each burst puts 20 work orders and 20
telemetry messages at once (the writer groups them into few transactions) after confirming
the telemetry of the previous burst; the key of every work order is printed the moment ``put``
returns, which is the outbox's promise that it is on disk.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.clock import SystemClock
from gateway.outbox import Outbox, OutboxItem

#: Work orders are never confirmed (each one must stay in the file); telemetry is, by another
#: target, so that routine writes (inserts, confirmations) interleave with the life-safety ones.
TARGETS = {"mqtt": {"work-orders"}, "platform-tsdb": {"telemetry"}}


async def main(path: Path, bursts: int) -> None:
    async with Outbox(path, targets=TARGETS, clock=SystemClock()) as outbox:
        async def put(item: OutboxItem) -> None:
            await outbox.put(item)
            if item.kind == "work_order":
                print(item.key, flush=True)

        for burst in range(bursts):
            items = [OutboxItem(kind="work_order", channel="work-orders", key=f"wo{burst}-{i}:1",
                                payload=b"w" * 200, priority="P0",
                                snapshot=(f"wo{burst}-{i}", '{"open": true}', True))
                     for i in range(20)]
            items += [OutboxItem(kind="telemetry", channel="telemetry", key=f"t{burst}-{i}",
                                 payload=b"t" * 200) for i in range(20)]
            while outbox.pending("platform-tsdb"):
                outbox.delivered("platform-tsdb", await outbox.next("platform-tsdb"))
            await asyncio.gather(*(put(item) for item in items))
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
