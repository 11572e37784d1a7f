"""Capped exponential backoff with jitter: the single retry policy of the gateway.

Every reconnect loop (MQTT brokers, Modbus links, upstream) and every slow-device back-off uses
this, so there is one policy to reason about and to configure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """``min(base * factor**tries, cap)`` seconds, with +/- ``jitter`` proportional noise.

    Call :meth:`next_delay` after each failure and :meth:`reset` after a success.
    """

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    tries: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                f"invalid backoff: base={self.base} cap={self.cap} factor={self.factor} "
                f"jitter={self.jitter} (need 0<base<=cap, factor>=1, 0<=jitter<1)"
            )

    def next_delay(self) -> float:
        """Delay before the next attempt; grows until ``cap``."""
        raw = min(self.base * self.factor**self.tries, self.cap)
        self.tries = min(self.tries + 1, 64)
        spread = raw * self.jitter
        return max(0.0, min(self.cap, raw + self.rng.uniform(-spread, spread)))

    def give_up_to_cap(self) -> float:
        """Jump straight to the cap (auth and config errors will not fix themselves quickly)."""
        self.tries = 64
        return self.cap

    def reset(self) -> None:
        self.tries = 0
