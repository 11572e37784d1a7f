"""Plays several scenarios at once, each in a process of its own against its own mosquitto.

A scenario run spends nearly all its time waiting on its accelerated clock, so a few of them
side by side cost little more wall time than the longest. Each gets its own interpreter and
event loop: at 20-30x, a 20 ms stall of a neighbour sharing the loop would be half a scenario
second, so sharing one loop would make the timings depend on the neighbours.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gateway.simrun import ScenarioResult, run_scenario
from simulators.scenario import load_scenario
from tests.support import Mosquitto

__all__ = ["Play", "Played", "play_apart"]


@dataclass(frozen=True)
class Play:
    """One scenario run: the scenario (library name or file), its speed and overrides."""

    scenario: str
    speed: float
    workdir: Path
    seed: int | None = None
    duration: float | None = None
    poll_interval: float = 0.5


@dataclass
class Played:
    """What a run gave: the runner's result and the narration it printed."""

    result: ScenarioResult
    lines: list[str] = field(default_factory=list)


def play_apart(plays: Sequence[Play], *, at_once: int) -> list[Played | BaseException]:
    """Run ``plays``, at most ``at_once`` at a time, in the order given (put the longest
    first); the outcome of each, in the same order, is its result or what it raised."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(max_workers=at_once, mp_context=spawn) as pool:
        futures = [pool.submit(_play, play) for play in plays]
        outcomes: list[Played | BaseException] = []
        for future in futures:
            error = future.exception()
            outcomes.append(future.result() if error is None else error)
        return outcomes


def _play(play: Play) -> Played:
    scenario = load_scenario(play.scenario)
    update: dict[str, object] = {}
    if play.seed is not None:
        update["seed"] = play.seed
    if play.duration is not None:
        update["duration"] = play.duration
    if update:
        scenario = scenario.model_copy(update=update)
    lines: list[str] = []
    play.workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(play.workdir)
    with broker.running():
        result = asyncio.run(run_scenario(scenario, speed=play.speed,
                                          broker=("127.0.0.1", broker.port),
                                          on_line=lines.append,
                                          poll_interval=play.poll_interval))
    return Played(result, lines)
