"""`propgw demo` as a newcomer runs it: a real process; its operator console answers with the
credentials the demo prints."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
async def test_the_demo_prints_a_console_that_lets_its_operator_in() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--duration", "30", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not (match := re.search(r"Operator console: (http://\S+)  \(log in as "
                                          r"'demo', password '([^']+)'\)", "".join(lines))):
                line = await proc.stdout.readline()
                assert line, "".join(lines)
                lines.append(line.decode())
        url, password = match.group(1).rstrip("/"), match.group(2)
        # unsafe: keep the session cookie of a bare IP address.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with asyncio.timeout(10):  # printed as the gateway starts; serving soon
                while True:
                    try:
                        async with http.post(f"{url}/api/v1/session", json={
                                "name": "demo", "password": password}) as response:
                            assert response.status == 200
                            assert (await response.json())["role"] == "operator"
                            break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.05)
            async with http.get(f"{url}/api/v1/alarms") as response:
                assert response.status == 200
            async with http.get(f"{url}/") as response:
                assert response.status == 200 and "text/html" in response.content_type
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(15):
                await proc.communicate()
    assert proc.returncode == 0
