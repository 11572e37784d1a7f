"""The suite's idle scenario alone, N times: start → upstream ``online`` and idle RSS of
``propgw run`` on the bench/rig.py site, for one or more source trees run alternately.

Each run is bench/scenarios.py ``idle`` as bench/suite.py runs it (fresh brokers, a fresh state
folder, no /metrics, no console). ``--tree`` runs another checkout's code with this virtualenv
(its folder goes first on ``PYTHONPATH``), e.g. an export of main
(``git archive main | tar -x -C /tmp/main``), so that before and after share the machine's load:

    .venv/bin/python bench/idle.py --runs 5 --tree /tmp/main --tree .

Each tree's byte-code cache is written first, as for an installed gateway (``rig.compile_sources``),
and a warm-up start per tree is not counted. Besides wall time, the gateway's CPU seconds when
``online`` arrives are shown: on a busy machine they say what the start costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import rig
from procstats import cpu_seconds, rss_mb
from scenarios import Timing


@dataclass
class Sample:
    online_s: float
    online_cpu_s: float
    rss_mb: float


def idle_once(work: Path, t: Timing) -> Sample:
    """bench/scenarios.py ``idle``, with the gateway's CPU time at ``online`` noted too."""
    with rig.brokers(work) as (dev, up), rig.platform_subscriber(up.port) as platform, \
            rig.gateway(work, dev.port, up.port, t.devices, metrics=False) as gw:
        rig.wait_until(lambda: platform.online_at is not None, 60, "the gateway's online", gw.log)
        cpu = cpu_seconds(gw.proc.pid)
        assert platform.online_at is not None
        online = platform.online_at - gw.started
        time.sleep(t.settle)
        return Sample(online, cpu, rss_mb(gw.proc.pid))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds between online and the RSS reading (the suite's: 10)")
    parser.add_argument("--tree", type=Path, action="append", metavar="DIR",
                        help="a source tree to run (repeatable; default: this one)")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in (args.tree or [rig.REPO])]
    for tree in trees:
        rig.compile_sources(tree)
    timing = Timing(warmup=0, settle=args.settle, drain=0, publishers=1)
    got: dict[Path, list[Sample]] = {tree: [] for tree in trees}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="propgw-idle-") as tmp:
        for i in range(-1, args.runs):  # run -1: the warm-up, not counted
            for n, tree in enumerate(trees):
                os.environ["PYTHONPATH"] = str(tree)
                sample = idle_once(Path(tmp) / f"r{i + 1}-{n}",
                                   timing if i >= 0 else Timing(0, 0.0, 0, 1))
                if i >= 0:
                    got[tree].append(sample)
                    print(f"{tree}: run {i + 1}: online {sample.online_s:.3f} s "
                          f"(CPU {sample.online_cpu_s:.2f} s), RSS {sample.rss_mb:.1f} MB",
                          file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    print(f"\n{args.runs} runs per tree, alternating; settle {args.settle:g} s; load average "
          f"(1 min) {min(load):.1f}–{max(load):.1f} on {os.cpu_count()} CPUs\n")
    print("| tree | start → online, s | CPU by online, s | VmRSS idle, MB |")
    print("| --- | ---: | ---: | ---: |")
    for tree, samples in got.items():
        cells = [_cell([getattr(s, f) for s in samples], fmt) for f, fmt in
                 (("online_s", "{:.3f}"), ("online_cpu_s", "{:.2f}"), ("rss_mb", "{:.1f}"))]
        print(f"| {tree} | " + " | ".join(cells) + " |")
    return 0


def _cell(values: list[float], fmt: str) -> str:
    """median (min–max)"""
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}–{fmt.format(max(values))})")


if __name__ == "__main__":
    sys.exit(main())
