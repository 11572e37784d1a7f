"""What every ``propgw`` command that works through the running gateway's console API does
around its own requests: connect as the command line and the site config say, and turn what
goes wrong into a sentence and an exit status."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from gateway.terminal._client import ApiClient, ApiError, connection_from
from gateway.terminal._site import SiteProblem

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "with_gateway"]

EXIT_FAILED, EXIT_USAGE = 1, 2


async def with_gateway(args: argparse.Namespace, call: Callable[[ApiClient], Awaitable[int]],
                       complain: Callable[[str], None]) -> int:
    """Run ``call`` with a client of the running gateway; its exit status, else
    :data:`EXIT_USAGE` when the site config or the token cannot be used and
    :data:`EXIT_FAILED` when the gateway refused or could not be reached (each told to
    ``complain`` first)."""
    try:
        # Reads the site config, the token file and the certificate: not on the loop.
        conn = await asyncio.to_thread(connection_from, args)
    except (SiteProblem, ValueError) as exc:
        complain(str(exc))
        return EXIT_USAGE
    async with ApiClient(conn) as client:
        try:
            return await call(client)
        except ApiError as exc:
            complain(str(exc))
            return EXIT_FAILED
