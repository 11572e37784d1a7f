"""Helpers for the commissioning tests: ``propgw`` as a real subprocess (this module holds no
tests of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import kill_if_running

__all__ = ["REPO", "Ran", "SimDevice", "control", "propgw", "sim_device", "write_site"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Ran:
    """A finished ``propgw`` run."""

    rc: int
    out: str
    err: str


async def propgw(*args: str, limit: float = 30.0) -> Ran:
    """Run ``propgw ARGS`` to the end (killed after ``limit`` seconds)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    finally:
        await kill_if_running(proc)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


@dataclass
class SimDevice:
    """A running ``propgw sim device``: its banner lines and its control API port."""

    proc: asyncio.subprocess.Process
    banner: list[str]
    control_port: int


@contextlib.asynccontextmanager
async def sim_device(*args: str, control_port: int) -> AsyncIterator[SimDevice]:
    """``propgw sim device ARGS --control-port PORT``, until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "device", *args,
        "--control-port", str(control_port), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        banner: list[str] = []
        async with asyncio.timeout(20):
            while not banner or not banner[-1].startswith("type an action"):
                line = (await proc.stdout.readline()).decode()
                assert line, f"sim device ended early: {''.join(banner)}"
                banner.append(line)
        yield SimDevice(proc, banner, control_port)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def control(port: int, device: str, action: str, **params: object) -> dict[str, object]:
    """POST one action to a simulator's control API; returns the JSON answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(params).encode()
    writer.write(b"POST /devices/%s/%s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                 % (device.encode(), action.encode(), len(body), body))
    await writer.drain()
    async with asyncio.timeout(10):
        response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], response
    answer: dict[str, object] = json.loads(payload)
    return answer


def write_site(path: Path, devices: str, *, brokers: str = "") -> Path:
    """A minimal site config with these ``devices:`` entries (YAML flow lines)."""
    path.write_text("site: {id: test-site, name: Test, gateway_id: gw-t}\n" + brokers
                    + "devices:\n" + devices)
    return path
