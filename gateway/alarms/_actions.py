"""Operator actions on alarms (the console's API): each is checked against the alarm's state
and either journaled (fsynced) and applied, or refused with :class:`AlarmActionRejected`.

ISA-18.2 / OPC UA Part 9 rules enforced here:

* **acknowledge** needs an unacknowledged alarm (active, returned or latched);
* **reset** needs a latched alarm that has been acknowledged; it is announced (state CLEARED,
  with the operator as ``actor``) when consumers were shown the alarm;
* **shelve** needs a reason and a duration up to ``alarms.shelve_max``; one-shot shelving (until
  the next return to normal, and at most ``shelve_max``) needs an active alarm. **Life-safety
  (P0) alarms cannot be shelved**, and an out-of-service alarm cannot be shelved;
* **unshelve** needs a shelved alarm;
* **remove from service** needs a reason (for a P0 alarm too: it is allowed for maintenance,
  logged at WARNING, and every activation while out of service is logged at WARNING);
* **return to service** needs an out-of-service alarm;
* **comment** needs text.

Leaving a hiding state (unshelve, shelving expiry, return to service) with the condition still
active announces the alarm again (state ACTIVE) to work orders and upstream.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from gateway.alarms._events import AlarmEvent, LifecycleState, Transition
from gateway.alarms._lifecycle import AlarmBook, Txn
from gateway.alarms._lifecycle_state import AlarmRecord, Hold, Shelf
from gateway.errors import AlarmActionRejected

__all__ = ["AlarmActions"]

log = logging.getLogger(__name__)


class AlarmActions:
    """What an operator can do to an alarm.

    Every method journals the action (``synchronous=FULL``) before it takes effect and returns
    the events it produced, the action's own first. ``actor`` is the operator's name.

    Raises (every method):
        UnknownAlarm: no alarm has this id.
        AlarmActionRejected: the action does not fit the alarm's current state; ``reason``
            says why.
        JournalError: the action could not be journaled; nothing changed.
    """

    def __init__(self, book: AlarmBook) -> None:
        self._book = book

    async def acknowledge(self, alarm_id: str, *, actor: str,
                          comment: str = "") -> list[AlarmEvent]:
        """Acknowledge an active, returned or latched alarm."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("acknowledge", rec, actor)
            if rec.acked:
                _reject("acknowledge", rec, "nothing to acknowledge: the alarm is normal"
                        if rec.base_state is LifecycleState.NORMAL else "already acknowledged")
            rec.acked = True
            self._book.after_ack(txn, rec)
            txn.emit(rec, Transition.ACKNOWLEDGED, actor=actor, reason=comment)

        return await self._book.operate("acknowledge", alarm_id, apply)

    async def reset(self, alarm_id: str, *, actor: str, reason: str = "") -> list[AlarmEvent]:
        """Reset a latched alarm (after its condition ended and it was acknowledged)."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("reset", rec, actor)
            if not rec.latched or rec.condition:
                _reject("reset", rec, "the alarm is not latched"
                        + (" (its condition is still active)" if rec.condition else ""))
            if not rec.acked:
                _reject("reset", rec, "acknowledge the alarm before resetting it")
            rec.latched = False
            # Consumers that were shown the alarm learn here that a person ended it: for a
            # latching alarm this, not the end of its condition, clears the work order.
            txn.emit(rec, Transition.RESET, actor=actor, reason=reason, announce=rec.shown)

        return await self._book.operate("reset", alarm_id, apply)

    async def shelve(self, alarm_id: str, *, actor: str, reason: str,
                     duration: float | None = None, one_shot: bool = False) -> list[AlarmEvent]:
        """Shelve an alarm: it is still evaluated and journaled but not announced.

        Args:
            alarm_id: The alarm.
            actor: The operator.
            reason: Why (required).
            duration: Seconds; default and upper bound ``alarms.shelve_max``.
            one_shot: Unshelve at the next return to normal (or after ``duration``).
        """
        limit = self._book.config.shelve_max

        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("shelve", rec, actor)
            if not reason.strip():
                _reject("shelve", rec, "a reason is required")
            if rec.priority == "P0":
                _reject("shelve", rec, "life-safety (P0) alarms cannot be shelved")
            if rec.out_of_service is not None:
                _reject("shelve", rec, "the alarm is out of service; return it to service "
                                       "first")
            if rec.shelf is not None:
                _reject("shelve", rec, f"already shelved by {rec.shelf.actor}")
            if duration is not None and not 0 < duration <= limit:
                _reject("shelve", rec, f"duration must be between 0 and {limit:g} s "
                                       f"(alarms.shelve_max), got {duration:g} s")
            if one_shot and not rec.condition:
                _reject("shelve", rec, "one-shot shelving is for an active alarm; this one "
                                       "is not active")
            until = txn.due_in(rec, "shelf", duration if duration is not None else limit)
            rec.shelf = Shelf(actor=actor, reason=reason, since=txn.ts, until=until,
                              one_shot=one_shot)
            kind = "one-shot (until return to normal)" if one_shot else "timed"
            txn.emit(rec, Transition.SHELVED, actor=actor,
                     reason=f"{reason} [{kind}, at most {until - txn.ts:g} s]")

        return await self._book.operate("shelve", alarm_id, apply)

    async def unshelve(self, alarm_id: str, *, actor: str,
                       reason: str = "") -> list[AlarmEvent]:
        """End an operator's shelving early."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("unshelve", rec, actor)
            if rec.shelf is None:
                _reject("unshelve", rec, "the alarm is not shelved")
            rec.shelf = None
            self._book.unhidden(txn, rec, Transition.UNSHELVED, actor=actor, reason=reason)

        return await self._book.operate("unshelve", alarm_id, apply)

    async def remove_from_service(self, alarm_id: str, *, actor: str,
                                  reason: str) -> list[AlarmEvent]:
        """Put an alarm out of service (maintenance): evaluated and journaled, not announced."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("remove_from_service", rec, actor)
            if not reason.strip():
                _reject("remove_from_service", rec, "a reason is required")
            if rec.out_of_service is not None:
                _reject("remove_from_service", rec,
                        f"already out of service ({rec.out_of_service.actor})")
            rec.out_of_service = Hold(actor=actor, reason=reason, since=txn.ts)
            if rec.priority == "P0":
                log.warning("life-safety alarm %s put out of service by %s: %s", rec.alarm_id,
                            actor, reason)
            txn.emit(rec, Transition.REMOVED_FROM_SERVICE, actor=actor, reason=reason)

        return await self._book.operate("remove_from_service", alarm_id, apply)

    async def return_to_service(self, alarm_id: str, *, actor: str,
                                reason: str = "") -> list[AlarmEvent]:
        """Put an out-of-service alarm back in service."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("return_to_service", rec, actor)
            if rec.out_of_service is None:
                _reject("return_to_service", rec, "the alarm is in service")
            rec.out_of_service = None
            self._book.unhidden(txn, rec, Transition.RETURNED_TO_SERVICE, actor=actor,
                                reason=reason)

        return await self._book.operate("return_to_service", alarm_id, apply)

    async def comment(self, alarm_id: str, *, actor: str, text: str) -> list[AlarmEvent]:
        """Attach a comment to the alarm's journal."""
        def apply(txn: Txn, rec: AlarmRecord) -> None:
            _need_actor("comment", rec, actor)
            if not text.strip():
                _reject("comment", rec, "the comment is empty")
            txn.emit(rec, Transition.COMMENT, actor=actor, reason=text)

        return await self._book.operate("comment", alarm_id, apply)


def _reject(action: str, rec: AlarmRecord, reason: str) -> NoReturn:
    raise AlarmActionRejected(alarm_id=rec.alarm_id, action=action, state=rec.lifecycle.value,
                              reason=reason)


def _need_actor(action: str, rec: AlarmRecord, actor: str) -> None:
    # "system" marks the gateway's own transitions in the journal; an operator is a person.
    if not actor.strip() or actor == "system":
        _reject(action, rec, "the operator's name is required")
