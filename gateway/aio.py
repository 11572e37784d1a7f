"""asyncio helpers that make two Python 3.11 cancellation hazards harmless.

* ``asyncio.TaskGroup`` (3.11) cancels its parent task when a child fails after the ``async
  with`` body has finished, and never takes that cancellation back: the parent stays
  "cancelling", so its next ``asyncio.timeout`` misfires or :func:`raise_if_cancelling` ends it
  as if it had been stopped. :func:`task_group` takes the stale request back. (Fixed in 3.12;
  there the helper changes nothing.)
* ``asyncio.wait_for`` (3.11), which aiomqtt 2.5.1 uses for publish and subscribe, returns the
  result when the operation completes in the same loop iteration as a cancellation, dropping the
  cancellation: :func:`raise_if_cancelling` after such an await raises it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

__all__ = ["first_of", "raise_if_cancelling", "task_group"]


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An ``asyncio.TaskGroup`` that leaves its parent's cancellation count as it found it.

    When the group fails (a child raised), any cancellation request the group made of its
    parent is taken back, so the code around it can catch the error and carry on (reconnect,
    retry) without being mistaken for a task that is being stopped. A cancellation that reaches
    the group from outside still propagates as ``CancelledError``.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("task_group() needs a running task")
    before = task.cancelling()
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except asyncio.CancelledError:
        raise
    except BaseException:
        while task.cancelling() > before:
            task.uncancel()
        raise


async def first_of(*waits: Awaitable[object]) -> None:
    """Return when the first of ``waits`` finishes (its error, if any, is raised); the others
    are cancelled and awaited, also when this is cancelled: nothing is left running."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled():
            task.result()


def raise_if_cancelling() -> None:
    """Call after every awaited aiomqtt operation that runs in a loop.

    aiomqtt 2.5.1 waits with ``asyncio.wait_for``, which in Python 3.11 returns the result when
    the operation completes in the same loop iteration as a cancellation: the request is lost and
    the task would wait forever in its next ``await`` while marked as cancelling (seen as a hung
    shutdown about once in five runs under load).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
