"""CPU cost of writing readings to InfluxDB, at a steady rate of readings per second.

Readings (one energy meter point each, distinct values) are published on a gateway ``Bus`` at
``--rate`` per second for ``--seconds``, once with no subscriber (baseline) and once with the
InfluxDB stage subscribed. The stage writes to a real ``influxd`` (Debian's 1.6.7) through the
test suite's ``/api/v2/write`` shim; both run in a child process, so this process's CPU time
(``time.process_time``: user + system, all threads, including the buffer's SQLite thread) is
the stage's cost plus the publisher's. The difference between the two runs is the stage.
``--down`` points the stage at a closed port instead: every batch goes to the buffer file.

    .venv/bin/python bench/influx_write.py [--rate 1000] [--seconds 20] [--down]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.bus import Bus, Overflow  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import load_config_text  # noqa: E402
from gateway.influx import InfluxWriter  # noqa: E402
from gateway.model import Quality, Reading  # noqa: E402
from simulators.site import free_port  # noqa: E402

_SERVER = """
import asyncio, sys
from pathlib import Path
from tests.influx_support import InfluxD, V2Shim
async def main():
    server = InfluxD(Path(sys.argv[1]))
    server.start()
    server.create_db("bench")
    shim = V2Shim(server.url)
    await shim.start()
    print(shim.url, flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await shim.stop()
        server.stop()
asyncio.run(main())
"""


async def publish(bus: Bus, rate: int, seconds: float) -> None:
    """``rate`` readings per second in 100 ticks per second, on time."""
    per_tick = max(1, rate // 100)
    start = time.monotonic()
    n = 0
    for tick in range(int(seconds * 100)):
        for _ in range(per_tick):
            await bus.publish(Reading("M1", "kwh", float(n), Quality.GOOD, time.time()))
            n += 1
        await asyncio.sleep(max(0.0, start + (tick + 1) / 100 - time.monotonic()))


async def run(rate: int, seconds: float, url: str | None, state: Path) -> tuple[float, int]:
    bus = Bus()
    writer = None
    task = None
    if url is not None:
        config = load_config_text(f"""
site: {{id: bench, name: bench, gateway_id: gw}}
influxdb: {{url: "{url}", bucket: bench, precision: us}}
devices:
  - {{id: M1, name: meter, driver: mqtt, kind: energy_meter, location: {{building: A, floor: 1}},
     points: [{{name: kwh, topic: m/kwh}}]}}
brokers: {{b: {{host: 127.0.0.1}}}}
""")
        writer = InfluxWriter(config, SystemClock(), buffer_path=state / "buffer.sqlite3")
        task = asyncio.create_task(writer.run(bus.subscribe("influxdb", maxsize=10_000,
                                                            overflow=Overflow.DROP_OLDEST)))
        await asyncio.sleep(1.0)  # imports and the buffer file, not measured
    cpu = time.process_time()
    await publish(bus, rate, seconds)
    used = time.process_time() - cpu
    written = 0
    if writer is not None and task is not None:
        async with asyncio.timeout(30):
            while writer.status().written + writer.status().buffered < rate * seconds:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        written = writer.status().written
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return used, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--down", action="store_true",
                        help="InfluxDB unreachable (a closed port): every batch to the buffer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-c", _SERVER, str(Path(tmp) / "influxd")],
                                  cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if args.down:
                url = f"http://127.0.0.1:{free_port()}"
            base, _ = asyncio.run(run(args.rate, args.seconds, None, Path(tmp)))
            used, written = asyncio.run(run(args.rate, args.seconds, url, Path(tmp)))
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(30)
    n = args.rate * args.seconds
    print(f"{args.rate} readings/s for {args.seconds:g} s ({n:.0f} readings)")
    print(f"  bus only (baseline):   {base:6.2f} s CPU = {100 * base / args.seconds:5.1f} % of "
          f"one core")
    print(f"  with the InfluxDB stage: {used:6.2f} s CPU = {100 * used / args.seconds:5.1f} % of "
          f"one core ({written} points written)")
    if args.down:
        print("  (InfluxDB unreachable: every point went to the buffer file)")
    print(f"  the stage:             {1e6 * (used - base) / n:6.1f} us CPU per reading")


if __name__ == "__main__":
    main()
