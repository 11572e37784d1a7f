"""A virtual RS-485 line: two linked pseudo-terminals made by socat.

The gateway opens one end as its serial port (``port: /tmp/x/gw`` in a modbus-rtu device) and a
simulated bus (``SimModbusServer(serial_port=...)``) the other, so RTU framing, the silent
interval and many units on one line can be tested without an adapter. A pty has no baud-rate
timing: bytes cross at memory speed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["pty_pair"]


@contextlib.contextmanager
def pty_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Yield (gateway end, bus end) paths of a socat pty pair living in ``directory``.

    Raises:
        RuntimeError: socat is missing (``scripts/setup.sh --test`` installs it) or did not
            create the pair within 5 s.
    """
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed; scripts/setup.sh --test installs it")
    gw, bus = directory / "gw", directory / "bus"
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={gw}", f"pty,raw,echo=0,link={bus}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not (gw.exists() and bus.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        yield str(gw), str(bus)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
