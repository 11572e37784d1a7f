"""Start-up cost of the ``propgw`` command: ``--version``, ``check-config``, time to the first
Modbus poll of ``propgw run``, and the steady RSS of that run.

* ``--version`` and ``check-config config/examples/site.yaml``: wall time of the real console
  script as a subprocess (``--runs`` times; median and min), and the number of modules each
  leaves in ``sys.modules`` (the same ``main()`` run in-process by a small driver).
* start to first poll: ``propgw run -c config/examples/two-elevators.yaml`` against two
  ``propgw sim device elevator`` simulators and a local mosquitto. Each simulator sits behind a
  byte relay in this script; the time is from just before the gateway process is started to the
  first Modbus response the relay passes back to it (the first request served). Repeated
  ``--runs`` times with the simulators left running.
* RSS: VmRSS of that ``propgw run`` after ``--rss-after`` seconds of polling.

    .venv/bin/python bench/startup.py [--runs 10] [--rss-after 30] [--tree DIR]

``--tree`` measures another checkout (e.g. ``git worktree add /tmp/before HEAD~3``) with this
virtualenv, so that "before" and "after" can be measured side by side under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # replaced by --tree
PROPGW = str(Path(sys.executable).parent / "propgw")
SITE = "config/examples/site.yaml"
TWO_ELEVATORS = "config/examples/two-elevators.yaml"
#: The site example reads its upstream password from the environment, as a Pi install does.
ENV = {**os.environ, "PLATFORM_MQTT_PASSWORD": "bench", "LOCAL_MQTT_PASSWORD": "bench"}

from procstats import free_port, process, rss_mb  # noqa: E402

#: Runs ``propgw ARGS...`` in-process and prints how many modules it left loaded.
_COUNT_MODULES = """
import contextlib, io, sys
from gateway.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(len(sys.modules))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="repetitions per measurement")
    parser.add_argument("--rss-after", type=float, default=30.0, metavar="S",
                        help="seconds of polling before the RSS is read")
    parser.add_argument("--tree", type=Path, default=REPO, metavar="DIR",
                        help="checkout to measure (default: this one)")
    args = parser.parse_args()
    use_tree(args.tree.resolve())

    rows: list[tuple[str, str, str, str]] = []
    for label, argv in [("propgw --version", ["--version"]),
                        (f"propgw check-config {SITE}", ["check-config", SITE])]:
        times = [wall_time([PROPGW, *argv]) for _ in range(args.runs)]
        rows.append((label, f"{statistics.median(times):.3f}", f"{min(times):.3f}",
                     str(modules_loaded(argv))))
        print(f"measured: {label}", file=sys.stderr)
    first_polls, rss = asyncio.run(run_measurements(args.runs, args.rss_after))
    rows.append((f"propgw run -c {TWO_ELEVATORS}: start to first poll",
                 f"{statistics.median(first_polls):.3f}", f"{min(first_polls):.3f}", ""))

    load = os.getloadavg()[0]
    print(f"\n{args.tree}: {args.runs} runs each; load average {load:.1f} on "
          f"{os.cpu_count()} CPUs\n")
    print("| measurement | median s | min s | modules loaded |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nVmRSS of `propgw run` after {args.rss_after:g} s of polling: {rss:.1f} MB")


def use_tree(tree: Path) -> None:
    """Every subprocess runs in ``tree`` and imports its code first."""
    global REPO  # noqa: PLW0603 - a command-line choice made once, before anything runs
    REPO = tree
    os.environ["PYTHONPATH"] = str(tree)
    ENV["PYTHONPATH"] = str(tree)


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def modules_loaded(argv: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", _COUNT_MODULES, *argv], cwd=REPO, env=ENV,
                         check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


async def run_measurements(runs: int, rss_after: float) -> tuple[list[float], float]:
    mqtt, e1, e2 = free_port(), free_port(), free_port()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp, \
            process(mosquitto, "-p", str(mqtt), cwd=REPO), \
            process(PROPGW, "sim", "device", "elevator", "--id", "E1", "--port", str(e1),
                    "--control-port", "0", cwd=REPO), \
            process(PROPGW, "sim", "device", "elevator", "--id", "E2", "--port", str(e2),
                    "--control-port", "0", cwd=REPO):
        config = Path(tmp) / "site.yaml"
        config.write_text((REPO / TWO_ELEVATORS).read_text(encoding="utf-8")
                          + f"\nstate_dir: {Path(tmp) / 'state'}\n", encoding="utf-8")
        await wait_listening(e1)
        await wait_listening(e2)
        first_polls = []
        for i in range(runs):
            first_polls.append(await first_poll(config, mqtt, e1, e2, hold=0.0))
            print(f"measured: first poll {i + 1}/{runs}", file=sys.stderr)
        rss = await first_poll(config, mqtt, e1, e2, hold=rss_after)
    return first_polls, rss


async def first_poll(config: Path, mqtt: int, e1: int, e2: int, *, hold: float) -> float:
    """Start the gateway behind relays; return the seconds to the first served request, or,
    with ``hold``, the gateway's VmRSS in MB after ``hold`` more seconds."""
    served = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()
    relays = [await relay(target, served, handlers) for target in (e1, e2)]
    ports = [str(r.sockets[0].getsockname()[1]) for r in relays]
    env = {**os.environ, "PROPGW_MQTT_PORT": str(mqtt), "PROPGW_UPSTREAM_PORT": str(mqtt),
           "PROPGW_E1_PORT": ports[0], "PROPGW_E2_PORT": ports[1]}
    try:
        start = time.perf_counter()
        with process(PROPGW, "run", "-c", str(config), cwd=REPO, env=env) as gw:
            async with asyncio.timeout(60):
                await served.wait()
            elapsed = time.perf_counter() - start
            if not hold:
                return elapsed
            await asyncio.sleep(hold)
            return rss_mb(gw.pid)
    finally:
        for r in relays:
            r.close()
        # The gateway has exited: each relayed connection ends by itself once both sides close.
        async with asyncio.timeout(10):
            await asyncio.gather(*handlers)


async def relay(target: int, served: asyncio.Event,
                handlers: set[asyncio.Task[None]]) -> asyncio.Server:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   mark: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
                if mark:
                    served.set()
        writer.close()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pipe(reader, up_writer, mark=False))
            tg.create_task(pipe(up_reader, writer, mark=True))

    return await asyncio.start_server(on_client, "127.0.0.1", 0)


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
            else:
                writer.close()
                return


if __name__ == "__main__":
    main()
