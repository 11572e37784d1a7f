"""A real terminal for tests: a tmux server of its own (private socket), one pane running a
command, keys sent to it and its screen read back as text.

Used for what only a terminal shows: ``propgw alarms watch`` (alternate screen, redraws,
Ctrl-C) and password prompts (``getpass`` reads ``/dev/tty``). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shlex
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

_COUNTER = itertools.count()
#: What the pane's shell prints when the command ends (the pane then stays for reading).
EXITED = re.compile(r"\[exit (\d+)\]")


def propgw_command(*args: str) -> str:
    """``propgw ARGS`` as a shell line, with this test run's interpreter."""
    return shlex.join([sys.executable, "-m", "gateway.cli", *args])


def need_tmux() -> str:
    binary = shutil.which("tmux")
    if binary is None:
        pytest.fail("tmux is not installed; scripts/setup.sh --test installs it")
    return binary


class Pane:
    """One tmux pane; see :func:`tmux_pane`."""

    def __init__(self, socket: str, binary: str) -> None:
        self.socket = socket
        self.binary = binary

    async def tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary, "-L", self.socket, *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {err.decode().strip()}")
        return out.decode()

    async def screen(self) -> str:
        """What the pane shows now, as text (colours dropped)."""
        return await self.tmux("capture-pane", "-p", "-t", "main")

    async def keys(self, *keys: str) -> None:
        await self.tmux("send-keys", "-t", "main", *keys)

    async def wait_for(self, test: str | Callable[[str], bool], *, within: float = 5.0
                       ) -> str:
        """The screen, as soon as it contains ``test`` (or ``test(screen)`` is true).

        Raises:
            AssertionError: not within ``within`` seconds (with the last screen).
        """
        check = (lambda s: test in s) if isinstance(test, str) else test
        screen = ""
        try:
            async with asyncio.timeout(within):
                while True:
                    screen = await self.screen()
                    if check(screen):
                        return screen
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"not on the screen within {within} s: {test!r}; the "
                                 f"screen:\n{screen}") from None

    async def exit_status(self, *, within: float = 5.0) -> int:
        screen = await self.wait_for(lambda s: EXITED.search(s) is not None, within=within)
        match = EXITED.search(screen)
        assert match is not None
        return int(match.group(1))


@asynccontextmanager
async def tmux_pane(command: str, *, cwd: Path, width: int = 80, height: int = 24,
                    env: Mapping[str, str] | None = None) -> AsyncIterator[Pane]:
    """A terminal ``width`` x ``height`` running ``command`` in ``cwd``; when it ends, the pane
    shows ``[exit N]`` and stays until the context ends."""
    binary = need_tmux()
    socket = f"propgw-test-{os.getpid()}-{next(_COUNTER)}"
    pane = Pane(socket, binary)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = (f"cd {shlex.quote(str(cwd))} && {'env ' + exports + ' ' if exports else ''}"
            f"{command}; echo \"[exit $?]\"; sleep 600")
    await pane.tmux("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", str(width),
                    "-y", str(height), line)
    try:
        yield pane
    finally:
        await pane.tmux("kill-server")
