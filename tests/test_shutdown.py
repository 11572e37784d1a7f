"""SIGTERM stops `propgw run` cleanly within 5 s, even while a Modbus request hangs."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import Mosquitto, kill_if_running, stop_and_read

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.mosquitto
async def test_sigterm_while_a_request_hangs_on_a_silent_device(mosquitto: Mosquitto,
                                                                tmp_path: Path) -> None:
    requests = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        try:
            while await reader.read(256):
                requests += 1  # swallow the request, never answer
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = tmp_path / "site.yaml"
    config.write_text(f"""
site: {{id: s, name: s, gateway_id: g}}
brokers: {{platform: {{host: 127.0.0.1, port: {mosquitto.port}}}}}
upstream: {{broker: platform}}
devices:
  - id: dead
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    timeout: 10s
    points: [{{name: x, address: 0}}]
""")
    async with server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(config), "--log-level", "INFO",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(15):
                while requests == 0:  # the gateway's first request is now hanging
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            output, _ = await stop_and_read(proc)
            elapsed = time.monotonic() - started
        finally:
            await kill_if_running(proc)
    text = output.decode()
    assert proc.returncode == 0, text
    assert elapsed < 5.0, f"took {elapsed:.2f}s to stop\n{text}"
    assert "Traceback" not in text, text
    assert "stopped" in text


async def test_sigterm_the_moment_the_gateway_says_it_runs_is_a_clean_stop(
        tmp_path: Path) -> None:
    """READY=1 and the "running" line used to come before the signal handlers were installed:
    a SIGTERM sent on reading them killed the process (exit -15, no clean shutdown)."""
    config = tmp_path / "site.yaml"
    config.write_text("site: {id: s, name: s, gateway_id: g}\n")
    for _ in range(3):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(config), "--log-level", "INFO",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines = []
        try:
            async with asyncio.timeout(15):
                async for raw in proc.stdout:
                    lines.append(raw.decode())
                    if " running: " in lines[-1]:
                        proc.send_signal(signal.SIGTERM)
                        break
                rest, _ = await proc.communicate()
        finally:
            await kill_if_running(proc)
        text = "".join(lines) + rest.decode()
        assert proc.returncode == 0, text
        assert "stopped" in text
