"""The suite's results as Markdown: the machine, the versions, one table of figures (median and
min–max over the runs), the steps of every run; appended to bench/RESULTS.md."""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from scenarios import Step, p99, verdict

if TYPE_CHECKING:
    from suite import Plan, Run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/RESULTS.md"

#: The figures every suite run reports, in the table's order (a test checks each is there).
FIGURES = (
    "gateway CPU at 1,000 msg/s",
    "sustained ingest",
    "p99 at the sustained rate",
    "work order upstream p99 at 1,000 msg/s",
    "alarm message p99 at 1,000 msg/s",
    "telemetry marker p99 at 1,000 msg/s",
    "at 2× sustained: rate reached",
    "at 2× sustained: life-safety triggers lost",
    "at 2× sustained: canary alarm message p99",
    "at 2× sustained: telemetry shed",
    "at 2× sustained: messages not taken",
    "at 2× sustained: RSS start / peak / end",
    "RSS idle",
    "start → upstream online",
)


def render(runs: Sequence[Run], plan: Plan, *, started: float, load_at_start: float,
           command: str, quick: bool) -> str:
    timing = plan.timing
    mode = "quick (smoke, not a result)" if quick else "full"
    lines = [
        f"## Suite run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}: {mode}, "
        f"{len(runs)} run(s)",
        "",
        f"`{command}`: steps {', '.join(f'{s:.0f}' for s in plan.steps)} msg/s of "
        f"{plan.step_seconds:g} s, 1,000 msg/s for {plan.cpu_seconds:g} s "
        f"({timing.warmup:g} s warm-up), overload for {plan.overload_seconds:g} s, "
        f"{timing.publishers} publisher process(es), "
        f"{timing.canary_rate:g} canaries/s and {timing.marker_rate:g} markers/s.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        f"- Load average (1 min) at the start / end: {load_at_start:.2f} / "
        f"{os.getloadavg()[0]:.2f}",
        "",
        "| figure | target | propgw: median (min–max) | paho-only: median (min–max) | "
        "propgw / paho-only |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in figures(runs):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Steps (target → reached by the publishers: verdict; worst probe p99, "
              "gateway / subscriber CPU):", ""]
    for i, run in enumerate(runs, 1):
        lines.append(f"- run {i}, propgw: " + "; ".join(_step(s) for s in run.search))
        lines.append(f"- run {i}, paho-only: " + "; ".join(_step(s) for s in run.paho_search))
        lines += [f"- run {i}: {note}" for note in run.notes]
    return "\n".join(lines) + "\n"


def figures(runs: Sequence[Run]) -> list[tuple[str, str, str, str, str]]:
    def gw(get: Callable[[Run], float], digits: int = 1) -> str:
        return spread([get(r) for r in runs], digits)

    cpu = [r.at_1k.cpu_pct for r in runs]
    paho_cpu = [r.paho_1k.cpu_pct for r in runs]
    ingest = [_rate(r.search) for r in runs]
    paho_ingest = [_rate(r.paho_search) for r in runs]
    over = [r.overload for r in runs if r.overload is not None]
    return [
        (FIGURES[0] + " (% of one core, median of per-second samples)", "≤ 5 %",
         spread(cpu, 1), spread(paho_cpu, 1), _ratio(cpu, paho_cpu)),
        (FIGURES[1] + " (msg/s: every probe alarmed, p99 < 2 s, nothing shed or dropped)",
         "≥ 15,000", spread(ingest, 0) + _ceiling(runs, "search"),
         spread(paho_ingest, 0) + _ceiling(runs, "paho_search"),
         _ratio(ingest, paho_ingest)),
        (FIGURES[2] + " (ms; propgw: the worse of canary and marker alarms, paho-only: "
                      "every message received)", "≤ 50 ms",
         gw(lambda r: s.worst_p99() if (s := r.sustained()) else math.nan),
         spread([s.worst_p99() if (s := r.paho_sustained()) else math.nan for r in runs], 1),
         ""),
        (FIGURES[3] + " (ms, canary publish → order on the platform broker)", "≤ 20 ms",
         gw(lambda r: p99(r.at_1k.order_ms)), "", ""),
        (FIGURES[4] + " (ms, canary publish → alarm message)", "",
         gw(lambda r: p99(r.at_1k.alarm_ms)), "", ""),
        (FIGURES[5] + " (ms, marker publish → alarm message)", "",
         gw(lambda r: p99(r.at_1k.marker_ms)), "", ""),
        (FIGURES[6] + " (msg/s reached by the publishers)", "",
         spread([s.achieved for s in over], 0), "", ""),
        (FIGURES[7] + " (canaries with no alarm message / sent)", "0",
         spread([s.canaries_lost for s in over], 0) + " of "
         + spread([s.canaries for s in over], 0), "", ""),
        (FIGURES[8] + " (ms, the canaries that arrived)", "",
         spread([p99(s.alarm_ms) for s in over], 1), "", ""),
        (FIGURES[9] + " (messages, from the gateway's shed counter)", "shed and counted",
         spread([s.shed for s in over], 0), "", ""),
        (FIGURES[10] + " (published − taken − shed; of which the device broker dropped)", "",
         spread([s.dropped for s in over], 0) + "; broker: "
         + spread([s.broker_dropped for s in over], 0), "", ""),
        (FIGURES[11] + " (MB)", "bounded",
         " / ".join(spread([s.rss[i] for s in over], 1) for i in range(3)), "", ""),
        (FIGURES[12] + " (MB, no /metrics)", "≤ 45 MB", gw(lambda r: r.idle.rss_mb), "", ""),
        (FIGURES[13] + " (s, retained online seen)", "≤ 0.3 s",
         gw(lambda r: r.idle.online_s, 3), "", ""),
    ]


def spread(values: Sequence[float], digits: int) -> str:
    """``median (min–max)``; ``n/a`` for no value."""
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "n/a"
    med = f"{statistics.median(ok):,.{digits}f}"
    if len(ok) == 1 and len(values) == 1:
        return med
    return f"{med} ({min(ok):,.{digits}f}–{max(ok):,.{digits}f})"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.system())
    return (f"{model}, {os.cpu_count()} cores, {mem / 1024 / 1024:.1f} GiB RAM, {os_name}, "
            f"kernel {platform.release()}")


def versions() -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        out = subprocess.run([mosquitto, "-h"], check=False, capture_output=True, text=True,
                             timeout=10)
        broker = out.stdout.splitlines()[0].removeprefix("mosquitto version ")
    except (OSError, IndexError, subprocess.TimeoutExpired):
        broker = "?"
    libs = ", ".join(f"{name} {_version(name)}" for name in ("aiomqtt", "paho-mqtt",
                                                             "pymodbus"))
    return (f"Python {sys.version.split()[0]}, propgw {commit}, {libs}, "
            f"mosquitto {broker}")


def append(path: Path, text: str) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    sep = "" if not existing or existing.endswith("\n\n") else (
        "\n" if existing.endswith("\n") else "\n\n")
    path.write_text(existing + sep + text, encoding="utf-8")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _rate(search: Sequence[Step]) -> float:
    """The highest step held; 0 when the first failed; NaN (not measured) when the publishers
    could not even reach the first."""
    held = [s.target for s in search if s.sustained()]
    if held:
        return held[-1]
    return math.nan if search and search[0].publisher_short else 0.0


def _ceiling(runs: Sequence[Run], which: str) -> str:
    """Why the search stopped where it did, when it was not the subject failing."""
    last = [getattr(r, which)[-1] for r in runs if getattr(r, which)]
    if any(s.publisher_short for s in last):
        return " (≥: the publishers fell short of the next step)"
    if last and all(s.sustained() for s in last):
        return " (≥: every step held)"
    return ""


def _ratio(ours: Sequence[float], theirs: Sequence[float]) -> str:
    pairs = [a / b for a, b in zip(ours, theirs, strict=True)
             if not math.isnan(a) and not math.isnan(b) and b]
    return spread(pairs, 2) if pairs else "n/a"


def _step(s: Step) -> str:
    return (f"{s.target:,.0f} → {s.achieved:,.0f}: {verdict(s)}, p99 {s.worst_p99():,.0f} ms, "
            f"CPU {s.cpu_pct:.0f} %")
