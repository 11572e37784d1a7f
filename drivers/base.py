"""What every southbound driver looks like to the gateway.

A driver owns its connections, produces :class:`~gateway.model.Reading` s into a sink and
reports its own health. It knows readings, not meaning: drivers never import alarms, work
orders, upstream or console code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.model import Reading

__all__ = ["Driver", "LinkHealth", "ReadingSink"]

class ReadingSink(Protocol):
    """Where a driver puts readings; awaiting it is how back-pressure reaches the driver.

    A driver hands over the readings of one message or one poll block in one call (one bus
    operation for all of them, and derived points computed from the whole set). ``urgent``
    marks life-safety readings, which overtake routine ones on their way to the alarms.
    """

    def __call__(self, readings: Sequence[Reading], /, *,
                 urgent: bool = False) -> Awaitable[None]:
        ...


@dataclass
class LinkHealth:
    """Health of one connection (a Modbus TCP endpoint or serial bus, an MQTT broker)."""

    link: str
    state: str = "starting"
    last_error: str | None = None
    #: Free-form counters: requests, timeouts, messages, malformed payloads, reconnects...
    counters: dict[str, int] = field(default_factory=dict)
    #: Per-device state for devices on this link: "ok", "comm-loss", "backoff"...
    devices: dict[str, str] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


class Driver(Protocol):
    """A running southbound connection."""

    @property
    def name(self) -> str:
        """Stable name used in task names and logs, e.g. ``modbus[10.0.0.5:502]``."""
        ...

    def health(self) -> LinkHealth:
        ...

    async def run(self, sink: ReadingSink) -> None:
        """Produce readings until cancelled.

        Handles its own reconnects and device errors; it returns or raises only on
        cancellation (or on a programming error, which the supervisor logs and restarts).
        """
        ...
