"""systemd ``sd_notify`` without a dependency: READY=1, RELOADING=1, STOPPING=1, STATUS= and
watchdog pings.

Does nothing when not started by systemd (no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["notify", "notify_reloading", "watchdog_interval"]

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; returns whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # A datagram socket blocks when the receiver's queue is full (10 by default on
            # Linux): never let a slow systemd stop the event loop; drop the message instead.
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except BlockingIOError:
        log.debug("sd_notify %s dropped: systemd's queue is full", state)
        return False
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state, exc)
        return False
    return True


def notify_reloading() -> bool:
    """Tell systemd a reload has begun (``READY=1`` ends it). The monotonic time stamp is
    what systemd requires with ``RELOADING=1`` from version 253 on; older ones ignore it."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half systemd's ``WatchdogSec``); None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2_000_000
