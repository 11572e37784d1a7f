"""The status endpoint against real HTTP clients on loopback, with a real work-order desk on the
fake clock behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from gateway.clock import FakeClock
from gateway.config import StatusApiConfig
from gateway.http_server import WebServer, platform_server
from gateway.workorders import WorkOrder, WorkOrderDesk
from tests.support import free_port
from tests.test_escalation import SITE, event

TOKEN = "status-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Served:
    api: WebServer
    desk: WorkOrderDesk
    order: WorkOrder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}/api/v1/work-orders/{self.order.id}/status"


@pytest.fixture
async def served(fake_clock: FakeClock) -> AsyncIterator[Served]:
    async def sink(order: WorkOrder) -> None:
        pass

    desk = WorkOrderDesk(SITE, fake_clock, sink)
    order = await desk.handle(event(fake_clock))
    assert order is not None
    api = platform_server(StatusApiConfig(port=free_port(), token=TOKEN), desk.apply_status)
    task = asyncio.create_task(api.run(), name="status-api")
    try:
        await asyncio.wait_for(api.serving.wait(), 5)
        yield Served(api, desk, order)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_answer_time_no_skew_explains_is_a_400_that_changes_nothing(
        served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(served.url, headers=AUTH, json={
                "status": "on_site", "at": "9999-12-31T23:59:59+00:00"}) as response:
            assert response.status == 400
            body = await response.json()
            assert "ahead of the gateway's clock" in body["error"]
        async with http.post(served.url, headers=AUTH, json={
                "status": "on_site", "at": "tomorrow"}) as response:
            assert response.status == 400
            body = await response.json()
            assert body["details"][0]["loc"] == ["at"]
        async with http.post(served.url, headers=AUTH, json={"status": "on_site"}) as response:
            assert response.status == 200
            assert (await response.json())["breaches"] == [], "the refusals left no trace"
