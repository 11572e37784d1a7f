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

from gateway.alarms import AlarmState
from gateway.demo import DEMO_POLL_INTERVAL, DEMO_SCENARIO
from simulators.scenario import load_scenario
from tests.scenario_play import Play, play_apart

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


@pytest.mark.slow
@pytest.mark.mosquitto
def test_ten_minutes_of_the_demo_raise_only_the_alarms_its_narration_announces(
        tmp_path: Path) -> None:
    """The demo's scenario, then its devices running on (random traffic, as `propgw demo`
    leaves them), for ten scenario minutes on an accelerated clock, with the demo's own seed
    and another: every alarm raised must be one its narration announces (its expect.alarms),
    each once, and nothing may be raised or cleared once the story is over. The two seeds
    play at once, each in its own process against its own real mosquitto."""
    scenario = load_scenario(DEMO_SCENARIO)
    announced = sorted((want.rule, want.device, want.priority)
                       for want in scenario.expect.alarms)
    seeds = [scenario.seed, 5]
    assert seeds[0] != seeds[1]
    outcomes = play_apart([Play(DEMO_SCENARIO, 30, tmp_path / f"seed-{seed}", seed=seed,
                                duration=610.0, poll_interval=DEMO_POLL_INTERVAL)
                           for seed in seeds], at_once=2)
    for seed, played in zip(seeds, outcomes, strict=True):
        if isinstance(played, BaseException):
            raise played
        result, lines = played.result, played.lines
        transcript = f"seed {seed}:\n" + "\n".join(lines)
        assert result.passed, "\n".join(result.failures) + "\n" + transcript
        raised = [(e.rule_id, e.device, e.priority) for _, e in result.alarms
                  if e.state is AlarmState.ACTIVE]
        assert sorted(raised) == announced, transcript
        assert any("walks out" in line for line in lines), "the passenger leaves E1 at the end"
        assert max(t for t, _ in result.alarms) < 90, transcript
