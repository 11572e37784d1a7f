"""``propgw sim run SCENARIO --upstream mqtt://...``: a platform developer's own broker sees
every message kind the gateway sends while a scenario plays (real mosquitto, real CLI)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema_rs
import pytest

from tests.support import Mosquitto, kill_if_running

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
async def test_sim_run_sends_every_message_kind_to_the_given_broker(
        mosquitto: Mosquitto) -> None:
    schema = json.loads((REPO / "docs" / "upstream.schema.json").read_text(encoding="utf-8"))
    consumer = jsonschema_rs.validator_for(schema, validate_formats=True)
    received: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
        await platform.subscribe("propgw/#", qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "sim", "run", "elevator-power-cut-occupied",
            "--speed", "10", "--upstream", mosquitto.url, cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(45):
                async for message in platform.messages:
                    assert isinstance(message.payload, bytes)
                    received.append((str(message.topic), json.loads(message.payload)))
                    if received[-1][1].get("state") == "offline":
                        break  # a clean stop: the last thing the gateway says
                out, _ = await proc.communicate()
        finally:
            await kill_if_running(proc)
    text = out.decode()
    assert proc.returncode == 0, text
    base = "propgw/sim-elevator-power-cut-occupied"
    assert f"upstream: {mosquitto.url}, topics {base}/#" in text
    assert "→ upstream" in text, "the run names each work order it sends"
    topics = {topic for topic, _ in received}
    assert topics == {f"{base}/gateway/status", f"{base}/alarms", f"{base}/work-orders",
                      f"{base}/telemetry/E1", f"{base}/telemetry/E2"}
    states = [m["state"] for t, m in received if t.endswith("/gateway/status")]
    assert states == ["online", "offline"]
    orders = [m for t, m in received if t.endswith("/work-orders")]
    assert {(o["priority"], o["event"]) for o in orders} >= {("P0", "raised"), ("P1", "raised")}
    for topic, payload in received:
        assert consumer.is_valid(payload), (topic, list(consumer.iter_errors(payload)))


def test_sim_run_refuses_a_bad_upstream_url() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "sim", "run",
                             "elevator-power-cut-occupied", "--upstream", "http://x:1"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "expected mqtt://HOST:PORT, got 'http://x:1'" in result.stderr
