"""Alarm flood and chatter detection (ISA-18.2 §16 / EEMUA 191 metrics), on monotonic time.

A **flood** starts when more than ``start_above`` new alarms arrive within a sliding
``window`` and ends when fewer than ``end_below`` remain in it: the hysteresis keeps a flood
from flickering on and off. A **chattering** alarm activated at least ``activations`` times
within ``window``; it stops chattering after a whole window without an activation.

Windows slide on monotonic time, so a wall clock stepped by NTP neither ends a flood early nor
drags it out. The flood's history is journaled as wall times (monotonic time means nothing to
the next run); a restarted gateway derives this run's monotonic times from them once
(:meth:`FloodDetector.rebase`), the best that can be done across a restart.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from gateway.config import ChatterConfig, FloodConfig

__all__ = ["FloodDetector", "FloodState", "chatter_window"]

#: A deadline computed as ``t + window`` may come back a hair short of ``window`` after ``t``;
#: this absorbs the float rounding.
_EPS = 1e-3


@dataclass
class FloodState:
    """The detector's journaled state."""

    #: Wall times of the new alarms still inside the window, oldest first (journaled).
    history: list[float] = field(default_factory=list)
    flood_id: str | None = None
    #: Wall time the flood started (a label).
    started: float | None = None
    #: New alarms counted since the flood started, and how many of them were grouped.
    counted: int = 0
    grouped: int = 0
    peak: int = 0
    #: Monotonic times of ``history`` on this run (not journaled).
    mono_history: list[float] = field(default_factory=list, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"history": self.history, "flood_id": self.flood_id, "started": self.started,
                "counted": self.counted, "grouped": self.grouped, "peak": self.peak}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FloodState:
        return cls(history=[float(t) for t in data.get("history", [])],
                   flood_id=data.get("flood_id"), started=data.get("started"),
                   counted=int(data.get("counted", 0)), grouped=int(data.get("grouped", 0)),
                   peak=int(data.get("peak", 0)))


class FloodDetector:
    """Counts new alarms in a sliding window and says when a flood starts and ends."""

    def __init__(self, config: FloodConfig, state: FloodState | None = None) -> None:
        self.config = config
        self.state = state or FloodState()

    @property
    def active(self) -> bool:
        return self.state.flood_id is not None

    @property
    def flood_id(self) -> str | None:
        return self.state.flood_id

    def individual(self, priority: str) -> bool:
        """Whether alarms of ``priority`` are still announced one by one during a flood."""
        return priority in self.config.individual

    def rebase(self, wall: float, mono: float) -> None:
        """Derive monotonic times for a history restored from the journal, from the clocks
        as they read now (``wall``, ``mono``); nothing to do when they are known already."""
        state = self.state
        if len(state.mono_history) != len(state.history):
            state.mono_history = [min(mono, mono - (wall - t)) for t in state.history]

    def in_window(self, now: float) -> int:
        """New alarms in the window ending at monotonic time ``now``."""
        self._slide(now)
        return len(self.state.history)

    def count(self, ts: float, mono: float) -> bool:
        """Count one new alarm at wall time ``ts``, monotonic time ``mono``; True when this
        one starts a flood."""
        self.rebase(ts, mono)
        self._slide(mono)
        self.state.history.append(ts)
        self.state.mono_history.append(mono)
        n = len(self.state.history)
        if self.active:
            self.state.counted += 1
            self.state.peak = max(self.state.peak, n)
            return False
        if n > self.config.start_above:
            self.state.flood_id = f"flood-{ts:.3f}"
            self.state.started = ts
            self.state.counted = n
            self.state.grouped = 0
            self.state.peak = n
            return True
        return False

    def ends(self, now: float) -> bool:
        """True when the flood is active and the window ending at monotonic time ``now`` has
        fallen below ``end_below``."""
        return self.active and self.in_window(now) < self.config.end_below

    def finish(self) -> FloodState:
        """End the flood; returns its final state (for the report) and resets the counters."""
        final = FloodState(history=list(self.state.history), flood_id=self.state.flood_id,
                           started=self.state.started, counted=self.state.counted,
                           grouped=self.state.grouped, peak=self.state.peak,
                           mono_history=list(self.state.mono_history))
        self.state.flood_id = None
        self.state.started = None
        self.state.counted = self.state.grouped = self.state.peak = 0
        return final

    def next_check(self) -> float | None:
        """Monotonic time at which the window, with no new alarm, drops below
        ``end_below``."""
        if not self.active:
            return None
        history = self.state.mono_history
        k = len(history) - self.config.end_below
        if k < 0:
            return history[-1] if history else 0.0
        return history[k] + self.config.window

    def _slide(self, now: float) -> None:
        # An alarm at t counts while now - window < t: one exactly `window` old has left.
        cut = bisect.bisect_right(self.state.mono_history, now - self.config.window + _EPS)
        if cut:
            del self.state.mono_history[:cut]
            del self.state.history[:cut]


def chatter_window(activations: list[float], ts: float, config: ChatterConfig) -> bool:
    """Add the activation at monotonic time ``ts`` (dropping those outside the window, in
    place); True when the alarm now counts as chattering."""
    cut = bisect.bisect_right(activations, ts - config.window)
    if cut:
        del activations[:cut]
    activations.append(ts)
    return len(activations) >= config.activations
