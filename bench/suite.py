"""The performance suite: ingest, latency, overload and footprint of ``propgw run`` on loopback,
next to a paho-only subscriber on the same load, appended to bench/RESULTS.md.

The rig: a device mosquitto (set up as shipped for a gateway) and a platform mosquitto on
127.0.0.1, QoS 1 on every hop; 10 devices publishing ``{ts, temp, hum, seq, sent_us}`` (4
readings per message) from ``--publishers`` separate processes (bench/loadgen.py), with
life-safety canaries (an at-once P0 threshold, their own topics) and telemetry markers (an
at-once P3 threshold inside the telemetry stream) whose alarm messages and work orders a
platform subscriber times. Each run:

1. idle: start → retained ``online`` on the platform broker, RSS after a settle time;
2. 1,000 msg/s: gateway CPU (median of per-second samples after a warm-up), canary → alarm
   message and → work order p99;
3. step search (``--steps``): the highest rate where every canary and marker alarmed, p99 < 2 s,
   and nothing was shed or dropped; it stops at the first step that fails or that the
   publishers could not reach (said so in the results);
4. overload at twice that rate: canaries lost, telemetry shed (the gateway's counters), RSS
   start / peak / end;
5. the paho-only subscriber (bench/pahosub.py): CPU at 1,000 msg/s and the same step search.

Every figure is the median of ``--runs`` runs with min and max.

    .venv/bin/python bench/suite.py              # full: 3 runs, about 15 minutes
    .venv/bin/python bench/suite.py --quick      # smoke: 1 run, one load step, short windows
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import report
import rig
import scenarios
from scenarios import Idle, Step, Timing

FULL_STEPS = (1000, 2000, 5000, 10_000, 15_000, 20_000)


@dataclass(frozen=True)
class Plan:
    """What a run measures and for how long."""

    steps: list[float]
    step_seconds: float
    cpu_seconds: float
    overload_seconds: float
    timing: Timing


@dataclass
class Run:
    idle: Idle
    at_1k: Step
    search: list[Step]
    overload: Step | None
    paho_1k: Step
    paho_search: list[Step]
    notes: list[str] = field(default_factory=list)

    def sustained(self) -> Step | None:
        return _best(self.search)

    def paho_sustained(self) -> Step | None:
        return _best(self.paho_search)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 1 run, short windows, two steps")
    parser.add_argument("--runs", type=int, help="runs (default 3; 1 with --quick)")
    parser.add_argument("--steps", help="comma-separated msg/s for the step search")
    parser.add_argument("--step-seconds", type=float, help="length of each step")
    parser.add_argument("--cpu-seconds", type=float,
                        help="length of the 1,000 msg/s scenario (warm-up included)")
    parser.add_argument("--overload-seconds", type=float)
    parser.add_argument("--publishers", type=int, default=2, help="load generator processes")
    parser.add_argument("--results", type=Path, default=report.RESULTS,
                        help="Markdown file the results are appended to")
    args = parser.parse_args(argv)
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    steps = ([float(s) for s in args.steps.split(",")] if args.steps
             else [1000.0] if quick else [float(s) for s in FULL_STEPS])
    step_s = args.step_seconds or (1.5 if quick else 10.0)
    cpu_s = args.cpu_seconds or (2.0 if quick else 30.0)
    overload_s = args.overload_seconds or (1.5 if quick else 20.0)
    plan = Plan(steps, step_s, cpu_s, overload_s,
                Timing(warmup=1.0 if quick else 5.0, settle=1.0 if quick else 10.0,
                       drain=10.0 if quick else 30.0, publishers=args.publishers))
    rig.compile_sources()
    started, load_at_start = time.time(), os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="propgw-bench-") as tmp:
        for i in range(runs):
            results.append(one_run(Path(tmp) / f"run{i}", plan,
                                   functools.partial(_log, f"run {i + 1}: ")))
    command = "bench/suite.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report.render(results, plan, started=started, load_at_start=load_at_start,
                         command=command.strip(), quick=quick)
    report.append(args.results, text)
    print(text)
    return 0


def one_run(work: Path, plan: Plan, log: Callable[[str], None]) -> Run:
    """Every scenario once, each on fresh brokers, a fresh gateway and a fresh state folder."""
    t, steps = plan.timing, plan.steps
    counter = iter(range(1000))

    def fresh() -> Path:
        return work / f"s{next(counter)}"

    idle = scenarios.idle(fresh(), t)
    log(f"idle: online after {idle.online_s:.3f} s, RSS {idle.rss_mb:.1f} MB")
    at_1k = scenarios.gateway_step(fresh(), 1000, plan.cpu_seconds, t)
    log(f"1000 msg/s: CPU {at_1k.cpu_pct:.1f} %, achieved {at_1k.achieved:.0f} msg/s")
    search = _search(lambda rate: scenarios.gateway_step(fresh(), rate, plan.step_seconds, t),
                     steps, log, "propgw")
    best = _best(search)
    notes = []
    overload = None
    # Twice the sustained rate; when no step held, twice the lowest step.
    rate = 2 * (best.target if best else steps[0])
    overload = scenarios.gateway_step(fresh(), rate, plan.overload_seconds, t)
    log(f"overload {rate:.0f} msg/s: achieved {overload.achieved:.0f}, canaries lost "
        f"{overload.canaries_lost}/{overload.canaries}, shed {overload.shed}")
    if overload.publisher_short:
        notes.append(f"overload: the publishers reached {overload.achieved:.0f} of "
                     f"{rate:.0f} msg/s")
    paho_1k = scenarios.paho_step(fresh(), 1000, plan.cpu_seconds, t)
    log(f"paho-only 1000 msg/s: CPU {paho_1k.cpu_pct:.1f} %")
    paho_search = _search(lambda rate: scenarios.paho_step(fresh(), rate, plan.step_seconds, t),
                          steps, log, "paho-only")
    for who, step in (("propgw", at_1k), ("paho-only", paho_1k)):
        if step.publisher_short:
            notes.append(f"{who} at 1,000 msg/s: the publishers reached {step.achieved:.0f} "
                         "msg/s; its CPU and p99 are at that rate")
    return Run(idle, at_1k, search, overload, paho_1k, paho_search, notes)


def _search(step: Callable[[float], Step], steps: list[float], log: Callable[[str], None],
            who: str) -> list[Step]:
    """Steps in increasing order until one fails or the publishers fall short of it."""
    done: list[Step] = []
    for rate in steps:
        result = step(rate)
        done.append(result)
        log(f"{who} step {rate:.0f}: {scenarios.verdict(result)}")
        if not result.sustained():
            break
    return done


def _best(search: list[Step]) -> Step | None:
    held = [s for s in search if s.sustained()]
    return held[-1] if held else None


def _log(prefix: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {prefix}{message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
