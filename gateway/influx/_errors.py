"""The stage's one error type."""

from __future__ import annotations

__all__ = ["WriteError"]


class WriteError(Exception):
    """A write did not succeed; ``status`` is the HTTP status, 0 when none came back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
