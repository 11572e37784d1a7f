"""Learned levels (rolling baselines) kept across restarts.

A night-consumption rule learns "a normal night" over days; forgetting it at every restart or
upgrade would silence the rule for days each time. The levels of every rule instance are saved
to a small JSON file in the state folder (``learned-<site>-<gateway>.json``) every few minutes
and when the gateway stops, and given back to the instances when they are built again.

Failure: a file that cannot be read is moved aside (logged, never deleted) and learning starts
afresh; a write that fails is logged once per failure spell and retried at the next save. No
state folder: nothing is kept, and the levels are learned again after a restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.alarms._conditions import LearnedLevel
from gateway.config import GatewayConfig, durable_state_dir
from gateway.statefiles import quarantine, write_json

__all__ = ["LearnedStore", "learned_path"]

log = logging.getLogger(__name__)

_VERSION = 1

Levels = Mapping[str, Sequence[LearnedLevel]]


def learned_path(config: GatewayConfig) -> Path | None:
    """Where the learned levels go; None without a durable state folder."""
    folder = durable_state_dir(config)
    if folder is None:
        return None
    return folder / f"learned-{config.site.id}-{config.site.gateway_id}.json"


class LearnedStore:
    """Reads and writes the learned-levels file. Synchronous: call from a worker thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._failing = False

    def load(self, now: float) -> dict[str, list[LearnedLevel]]:
        """The levels by alarm id (``rule@device``); empty when there is no file or it cannot
        be read (then it is moved aside)."""
        if self.path is None:
            return {}
        try:
            return _parse(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            failure = exc
        moved = quarantine(self.path, now)
        log.error("learned levels: %s cannot be read (%s); moved to %s, learning starts afresh",
                  self.path, failure, moved)
        return {}

    def save(self, levels: Levels, now: float) -> None:
        if self.path is None:
            return
        data = {"version": _VERSION, "saved_at": now,
                "levels": {alarm_id: [[lv.key, lv.level, lv.samples] for lv in found]
                           for alarm_id, found in sorted(levels.items()) if found}}
        failure: OSError | None = None
        try:
            write_json(self.path, data)
        except OSError as exc:
            failure = exc
        if failure is not None and not self._failing:
            log.error("learned levels: cannot write %s (%s); they are kept in memory and "
                      "written again at the next save", self.path, failure)
        elif failure is None and self._failing:
            log.info("learned levels: %s written again", self.path)
        self._failing = failure is not None


def _parse(data: Any) -> dict[str, list[LearnedLevel]]:
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise ValueError(f"not a learned-levels file of version {_VERSION}")
    out: dict[str, list[LearnedLevel]] = {}
    for alarm_id, found in data["levels"].items():
        out[str(alarm_id)] = [LearnedLevel(str(key), float(level), int(samples))
                              for key, level, samples in found]
    return out
