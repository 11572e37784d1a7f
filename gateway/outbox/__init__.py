"""Durable outbox between the work-order desk and the upstream publishers (SQLite, WAL)."""

from gateway.outbox._outbox import PRIORITY_RANK, Envelope, Outbox, OutboxHealth, OutboxItem
from gateway.outbox._progress import DeliveryProgress

__all__ = ["PRIORITY_RANK", "DeliveryProgress", "Envelope", "Outbox", "OutboxHealth", "OutboxItem"]
