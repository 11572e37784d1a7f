"""The console's devices page lists a device's derived points with their values, like any point
(a real gateway with its console, a real mosquitto)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import load_config_text
from tests.console_support import SITE, STATUS_TOKEN, add_users, running_console
from tests.support import Mosquitto

pytestmark = pytest.mark.mosquitto

DERIVED = """points: [{{name: trapped, topic: dev/E1/trapped, type: int}}],
     derived: [{{name: trapped_text, from: trapped, map: {{1: trapped, 0: free}}, unit: flag}}]}}"""


async def test_devices_page_shows_derived_points(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = SITE.replace("points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}",
                        DERIVED)
    assert site != SITE
    config = load_config_text(site.format(state=tmp_path / "state", port=mosquitto.port,
                                          token=STATUS_TOKEN))
    add_users(config)
    async with running_console(config, mosquitto.port) as run:
        viewer = await run.client()
        await viewer.login("li")
        await run.publish("dev/E1/trapped", "1")
        async with asyncio.timeout(5):
            while True:
                status, devices = await viewer.get("/api/v1/devices")
                assert status == 200
                e1 = next(d for d in devices["devices"] if d["id"] == "E1")
                if all(p["value"] is not None for p in e1["points"]):
                    break
                await asyncio.sleep(0.02)
        assert [(p["name"], p["value"], p["quality"], p["unit"]) for p in e1["points"]] == [
            ("trapped", 1, "good", None), ("trapped_text", "trapped", "good", "flag")]
