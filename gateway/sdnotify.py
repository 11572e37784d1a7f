"""systemd ``sd_notify`` without a dependency: READY=1, STOPPING=1 and watchdog pings.

Does nothing when not started by systemd (no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import logging
import os
import socket

from gateway.clock import Clock

__all__ = ["notify", "watchdog"]

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
            sock.sendto(state.encode(), address)  # datagram to a local socket: never blocks
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state, exc)
        return False
    return True


async def watchdog(clock: Clock) -> None:
    """Ping systemd's watchdog at half its interval while the event loop is alive."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return
    interval = int(usec) / 2_000_000
    while True:
        notify("WATCHDOG=1")
        await clock.sleep(interval)
