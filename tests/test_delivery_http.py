"""Work orders to a platform's REST API: a real aiohttp server on 127.0.0.1 stands in for the
platform. Retries on 5xx, parking on 4xx, idempotency keys, the authenticated status endpoint,
and the outage-plus-SIGKILL scenario through a real gateway process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import load_config_text
from tests.drill_support import HTTP_TOKEN as TOKEN
from tests.drill_support import HttpPlatform
from tests.support import Mosquitto, free_port
from tests.test_delivery_mqtt import DEVICES, gateway_process, publish, site_config

STATUS_TOKEN = "status-token-0123456789"


@pytest.fixture
async def platform_api() -> AsyncIterator[HttpPlatform]:
    api = HttpPlatform()
    await api.start()
    yield api
    await api.stop()


def http_upstream(api_port: int, status_port: int) -> str:
    return f"""\
upstream:
  http:
    url: http://127.0.0.1:{api_port}/api/work-orders
    token: {TOKEN}
    retry: {{initial: 50ms, max: 200ms}}
    timeouts: {{connect: 1s, read: 2s, total: 3s}}
  status_api: {{port: {status_port}, token: {STATUS_TOKEN}}}"""


@pytest.mark.mosquitto
async def test_http_retries_5xx_parks_4xx_and_takes_status_answers(
        mosquitto: Mosquitto, platform_api: HttpPlatform, tmp_path: Path) -> None:
    status_port = free_port()
    config = load_config_text(f"""
site: {{id: kill, name: 测试, gateway_id: gw1}}
state_dir: {tmp_path / "state"}
brokers:
  devices: {{host: 127.0.0.1, port: {mosquitto.port}, reconnect: {{initial: 0.1, max: 0.5}}}}
{http_upstream(platform_api.port, status_port)}
""" + DEVICES.format())
    platform_api.script = {"elevator_entrapment": [500, 503], "door_forced": [400]}
    gateway = Gateway(config)
    stop = asyncio.Event()
    base = f"http://127.0.0.1:{status_port}/api/v1"
    auth = {"Authorization": f"Bearer {STATUS_TOKEN}"}
    async with asyncio.TaskGroup() as tg:
        tg.create_task(gateway.run(shutdown_trigger=stop.wait))
        await gateway.started.wait()
        assert gateway.web is not None and gateway.outbox is not None
        await asyncio.wait_for(gateway.web.serving.wait(), 5)
        await asyncio.sleep(0.3)  # the device driver subscribes
        await publish(mosquitto.port, "dev/door1/forced", "1")
        await publish(mosquitto.port, "dev/E1/trapped", "1")
        await platform_api.wait_delivered(1)
        # Backoff is 50-200 ms: a retry loop on the 400 would have knocked many times by now.
        await asyncio.sleep(1.0)
        entrapment = next(r for r in platform_api.requests
                          if r.body["category"] == "elevator_entrapment")
        tries = [(r.body["category"], r.status) for r in platform_api.requests]
        assert [t for t in tries if t[0] == "elevator_entrapment"] == [
            ("elevator_entrapment", 500), ("elevator_entrapment", 503),
            ("elevator_entrapment", 200)], "5xx retried until accepted"
        assert [t for t in tries if t[0] == "door_forced"] == [("door_forced", 400)], \
            "4xx tried once, then parked"
        keys = {r.key for r in platform_api.requests if r.body["category"] == "elevator_entrapment"}
        assert keys == {f"{entrapment.body['id']}:1"}, "every retry carries the same key"
        health = gateway.health()
        assert health["outbox"]["parked"] == {"http": 1}
        assert health["http"]["retries"] == 2
        [(parked, reason)] = gateway.outbox.parked("http")
        assert reason.startswith("HTTP 400") and json.loads(parked.payload)["category"] == \
            "door_forced"

        order_id = entrapment.body["id"]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/work-orders/{order_id}/status",
                                 json={"status": "acknowledged"}) as response:
                assert response.status == 401
            async with http.post(f"{base}/work-orders/{order_id}/status", headers=auth,
                                 json={"status": "arrived"}) as response:
                assert response.status == 400
            async with http.post(f"{base}/work-orders/nope/status", headers=auth,
                                 json={"status": "acknowledged"}) as response:
                assert response.status == 404
            async with http.post(f"{base}/work-orders/{order_id}/status", headers=auth,
                                 json={"status": "acknowledged", "by": "中控室 王五"}) as response:
                assert response.status == 200
                answer = await response.json()
            async with http.get(f"{base}/upstream/health", headers=auth) as response:
                assert (await response.json())["outbox"]["parked"] == {"http": 1}
        assert answer["status"] == "acknowledged" and answer["seq"] == 2
        await platform_api.wait_delivered(2)
        update = platform_api.delivered()[-1]
        assert update.key == f"{order_id}:2" and update.body["status_by"] == "中控室 王五"
        stop.set()


@pytest.mark.mosquitto
@pytest.mark.slow
async def test_http_work_orders_survive_an_outage_and_a_sigkill_exactly_once_in_order(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    api = HttpPlatform()
    config = site_config(tmp_path, mosquitto.port, http_upstream(api.port, free_port()))
    await api.start()
    try:
        async with gateway_process(config) as gw:
            await gw.wait_for(r"mqtt\[devices\]: connected")
            await publish(mosquitto.port, "dev/E1/trapped", "1")
            await api.wait_delivered(1)
            await api.stop()  # the platform goes away
            for topic, category in [("dev/leak1/wet", "water_leak"),
                                    ("dev/panel/fire", "fire_alarm"),
                                    ("dev/door1/forced", "door_forced")]:
                await publish(mosquitto.port, topic, "1")
                await gw.wait_for(rf"work order \S+ raised \(P\d {category}")
            await gw.kill()
        async with gateway_process(config) as gw:
            await gw.wait_for(r"outbox: 3 message\(s\) left by the previous run")
            await gw.wait_for(r"upstream http: \S+ not delivered")
            await api.start()
            await api.wait_delivered(4)
            await gw.wait_for(r"upstream http: \S+ accepts messages again")
            await asyncio.sleep(0.5)  # anything sent twice would arrive by now
            assert await gw.stop() == 0, gw.text
    finally:
        await api.stop()
    delivered = api.delivered()
    ids = [r.body["id"] for r in delivered]
    assert len(ids) == len(set(ids)) == 4, f"each work order exactly once by id: {ids}"
    assert [r.key for r in delivered] == [f"{i}:1" for i in ids]
    assert [(r.body["category"], r.body["priority"]) for r in delivered[1:]] == [
        ("fire_alarm", "P0"), ("water_leak", "P1"), ("door_forced", "P1")]
