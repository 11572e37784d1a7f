"""How far a publisher is getting with its target: what the health model reads to tell a
publisher that is waiting for a reason (link down, back-off after a refusal) from one that has
stopped moving."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeliveryProgress"]


@dataclass
class DeliveryProgress:
    """Kept up to date by one publisher; every time is on the monotonic clock.

    Attributes:
        connected: Whether the link to the target is up; None for targets without a lasting
            link (HTTP), where only attempts count.
        last_activity: The last attempt, delivery or (re)connection.
        waiting_until: The end of a deliberate wait (retry back-off), if one is under way.
        last_error: Why the last attempt failed, while it is the latest news.
    """

    connected: bool | None = None
    last_activity: float | None = None
    waiting_until: float | None = None
    last_error: str | None = None
    sent: int = 0

    def attempt(self, now: float) -> None:
        self.last_activity = now
        self.waiting_until = None

    def delivered(self, now: float) -> None:
        self.last_activity = now
        self.last_error = None
        self.sent += 1

    def idle_for(self, now: float) -> float:
        """Seconds since the publisher last did (or deliberately waited for) anything."""
        marks = [m for m in (self.last_activity, self.waiting_until) if m is not None]
        return now - max(marks) if marks else float("inf")
