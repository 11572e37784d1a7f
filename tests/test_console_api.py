"""The console's REST API and live feed against a real gateway, real MQTT devices and a real
user file: who may do what, the alarm board, operator actions, the live feed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.console_support import STATUS_TOKEN, Client, site_console
from tests.support import Mosquitto

pytestmark = pytest.mark.mosquitto


async def read_events(base: str, cookies: Any, count: int, *, last_id: str | None = None,
                      deadline: float = 5.0) -> list[tuple[str, str, dict[str, Any]]]:
    """The first ``count`` events of the live feed: (id, kind, data)."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with aiohttp.ClientSession(cookies=cookies) as http, \
            http.get(f"{base}/api/v1/events", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async with asyncio.timeout(deadline):
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "event" in fields:
                        events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                        if len(events) == count:
                            return events
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
    return events


async def test_only_logged_in_users_see_and_only_the_right_roles_act(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        anon = await run.client()
        assert (await anon.get("/healthz"))[0] == 200
        status, site = await anon.get("/api/v1/site")
        assert status == 200 and site["timezone"] == "Asia/Shanghai" and site["users_configured"]
        assert (await anon.get("/api/v1/alarms"))[0] == 401

        await run.publish("dev/E1/trapped", "1")
        viewer, operator = await run.client(), await run.client()
        assert (await viewer.login("li")).status == 200
        assert (await operator.login("wang")).status == 200
        alarm = await run.wait_alarm(viewer, "trapped@E1", "active_unacknowledged")
        assert alarm["priority"] == "P0" and alarm["location"]["building"] == "1号楼"
        assert alarm["message"] == {"zh": "电梯困人", "en": "passenger trapped"}
        order = alarm["work_order"]
        assert order is not None and order["escalation_level"] == 1 and order["respond_by"]

        status, body = await viewer.post("/api/v1/alarms/trapped@E1/acknowledge", {})
        assert status == 403 and "operator" in body["error"], "a viewer cannot act"
        status, body = await operator.post("/api/v1/alarms/trapped@E1/acknowledge", {},
                                           csrf=False)
        assert status == 403 and "X-CSRF-Token" in body["error"]
        status, body = await operator.post("/api/v1/alarms/trapped@E1/acknowledge",
                                           {"comment": "已通知维保"})
        assert status == 200 and body["state"] == "active_acknowledged"
        status, body = await operator.post("/api/v1/alarms/trapped@E1/acknowledge", {})
        assert status == 409 and body["error"] == "already acknowledged", "refusal reason"
        status, body = await operator.post("/api/v1/alarms/trapped@E1/shelve",
                                           {"reason": "test", "duration_s": 60})
        assert status == 409 and "P0" in body["error"]
        status, body = await operator.post("/api/v1/alarms/trapped@E1/remove-from-service",
                                           {"reason": "maintenance"})
        assert status == 403, "engineers only"
        status, body = await operator.post("/api/v1/alarms/nope@E1/acknowledge", {})
        assert status == 404

        status, history = await viewer.get("/api/v1/history?hours=1")
        assert status == 200
        acked = [e for e in history["events"] if e["transition"] == "acknowledged"]
        assert acked[0]["actor"] == "wang" and acked[0]["reason"] == "已通知维保", \
            "every action is journaled with the user"


async def test_a_latched_leak_is_acknowledged_then_reset(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        op = await run.client()
        await op.login("wang")
        await run.publish("dev/W1/wet", "1")
        await run.wait_alarm(op, "leak@W1", "active_unacknowledged")
        await run.publish("dev/W1/wet", "0")
        await run.wait_alarm(op, "leak@W1", "latched")
        status, body = await op.post("/api/v1/alarms/leak@W1/reset", {})
        assert status == 409 and "acknowledge" in body["error"]
        assert (await op.post("/api/v1/alarms/leak@W1/acknowledge", {}))[0] == 200
        status, body = await op.post("/api/v1/alarms/leak@W1/reset", {"reason": "已修复"})
        assert status == 200 and body["state"] == "normal"
        _, board = await op.get("/api/v1/alarms")
        assert "leak@W1" not in [a["alarm_id"] for a in board["alarms"]]


async def test_the_live_feed_shows_changes_and_resumes_after_a_blip(mosquitto: Mosquitto,
                                                                     tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        op = await run.client()
        await op.login("wang")
        cookies = {c.key: c.value for c in op.http.cookie_jar}
        watching = asyncio.create_task(read_events(run.base, cookies, 2))
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        await run.publish("dev/E1/trapped", "1")
        events = await watching
        assert asyncio.get_running_loop().time() - started < 1.0, "within a second"
        assert {k for _, k, _ in events} == {"alarm", "work_order"}
        alarm = next(d for _, k, d in events if k == "alarm")
        assert alarm["alarm"]["state"] == "active_unacknowledged"
        assert alarm["alarm"]["work_order"]["escalation_level"] == 1
        first_id = events[-1][0]
        # A blip: the browser is away while two things happen, then comes back.
        await op.post("/api/v1/alarms/trapped@E1/acknowledge", {})
        await run.publish("dev/E1/trapped", "0")
        await run.wait_alarm(op, "trapped@E1", "normal")
        missed = await read_events(run.base, cookies, 3, last_id=first_id)
        kinds = [(k, d.get("transition") or d.get("event")) for _, k, d in missed]
        assert ("alarm", "acknowledged") in kinds and ("alarm", "returned_to_normal") in kinds
        resync = await read_events(run.base, cookies, 1, last_id="0-1")
        assert resync[0][1] == "resync", "an id from another run: re-read the board"


async def test_logins_are_throttled_and_tokens_work(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        with run.users as store:
            token = store.issue_token("wang", "cli")
        guesser = await run.client()
        for _ in range(5):
            assert (await guesser.login("wang", "wrong-password")).status == 401
        locked = await guesser.login("wang")
        assert locked.status == 429 and int(locked.headers["Retry-After"]) > 0, \
            "even the right password waits after five failures"
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{run.base}/api/v1/alarms", headers=headers) as response:
                assert response.status == 200
            async with http.post(f"{run.base}/api/v1/alarms/trapped@E1/comment",
                                 json={"text": "from the CLI"}, headers=headers) as response:
                assert response.status == 200, "no CSRF for API tokens"
            bad = {"Authorization": "Bearer pgw_nope"}
            async with http.get(f"{run.base}/api/v1/alarms", headers=bad) as response:
                assert response.status == 401


async def test_one_server_also_answers_the_platform_and_describes_itself(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        op = await run.client()
        await op.login("wang")
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {STATUS_TOKEN}"}
            async with http.get(f"{run.base}/api/v1/upstream/health", headers=auth) as r:
                assert r.status == 200 and "status" in await r.json()
            async with http.get(f"{run.base}/api/v1/upstream/health") as r:
                assert r.status == 401
            async with http.get(f"{run.base}/api/v1/openapi.json") as r:
                spec = await r.json()
            async with http.get(f"{run.base}/") as r:
                assert r.status == 200 and "default-src 'self'" in \
                    r.headers["Content-Security-Policy"]
        assert "/api/v1/alarms/{alarm_id}/acknowledge" in spec["paths"]
        assert spec["components"]["securitySchemes"]["session"]["name"] == "propgw_session"
        # The platform's token is no user: it cannot use the console's API.
        status, _ = await Client(run.base, op.http).get("/api/v1/alarms")
        assert status == 200
        async with aiohttp.ClientSession() as http, http.get(
                f"{run.base}/api/v1/alarms", headers={
                    "Authorization": f"Bearer {STATUS_TOKEN}"}) as r:
            assert r.status == 401


async def test_work_orders_their_timeline_and_what_devices_read(mosquitto: Mosquitto,
                                                                  tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        viewer = await run.client()
        await viewer.login("li")
        await run.publish("dev/E1/trapped", "1")
        alarm = await run.wait_alarm(viewer, "trapped@E1", "active_unacknowledged")
        order_id = alarm["work_order"]["id"]
        async with aiohttp.ClientSession() as http, http.post(
                f"{run.base}/api/v1/work-orders/{order_id}/status",
                headers={"Authorization": f"Bearer {STATUS_TOKEN}"},
                json={"status": "acknowledged", "by": "维保 张工"}) as response:
            assert response.status == 200
        status, body = await viewer.get("/api/v1/work-orders")
        assert status == 200 and [o["id"] for o in body["orders"]] == [order_id]
        assert body["orders"][0]["status"] == "acknowledged"
        async with asyncio.timeout(5):
            while True:  # the history writes behind the desk
                status, detail = await viewer.get(f"/api/v1/work-orders/{order_id}")
                if [v["event"] for v in detail["versions"]] == ["raised", "acknowledged"]:
                    break
                await asyncio.sleep(0.02)
        assert detail["status_by"] == "维保 张工"
        status, recent = await viewer.get("/api/v1/work-orders?scope=recent&hours=1")
        assert status == 200 and recent["orders"][0]["id"] == order_id
        assert (await viewer.get("/api/v1/work-orders/nope"))[0] == 404
        assert (await viewer.get("/api/v1/work-orders?scope=later"))[0] == 400

        status, devices = await viewer.get("/api/v1/devices")
        e1 = next(d for d in devices["devices"] if d["id"] == "E1")
        assert e1["state"] == "ok" and e1["readings"] >= 1
        assert e1["points"] == [{"name": "trapped", "value": 1, "quality": "good",
                                 "ts": e1["points"][0]["ts"], "unit": None}]


async def test_an_open_live_feed_does_not_hold_up_a_shutdown(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with site_console(tmp_path, mosquitto.port) as run:
        op = await run.client()
        await op.login("wang")
        cookies = {c.key: c.value for c in op.http.cookie_jar}
        http = aiohttp.ClientSession(cookies=cookies)
        stream = await http.get(f"{run.base}/api/v1/events")
        assert stream.status == 200
        stopping = loop.time()
    stopped = loop.time() - stopping
    stream.close()
    await http.close()
    assert stopped < 2.5, f"stopping took {stopped:.1f} s with a browser connected"


async def test_changes_made_with_propgw_users_take_effect_at_once(mosquitto: Mosquitto,
                                                                 tmp_path: Path) -> None:
    """The CLI writes the user file while the gateway runs: a deleted user, a changed role or
    password, and a revoked token must not keep working for a session's lifetime."""
    async with site_console(tmp_path, mosquitto.port) as run:
        with run.users as store:
            token = store.issue_token("zhao", "cli")
        wang, li = await run.client(), await run.client()
        await wang.login("wang")
        await li.login("li")
        assert (await wang.get("/api/v1/alarms"))[0] == 200
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{run.base}/api/v1/alarms", headers=headers) as response:
                assert response.status == 200
            with run.users as store:  # as `propgw users` would, from another process
                store.set_password("wang", "a new password 2")
                store.revoke_tokens("zhao")
            async with http.get(f"{run.base}/api/v1/alarms", headers=headers) as response:
                assert response.status == 401, "a revoked token stops at once"
        assert (await wang.get("/api/v1/alarms"))[0] == 401, "a changed password ends sessions"
        assert (await li.get("/api/v1/alarms"))[0] == 200, "others are not affected"
        with run.users as store:
            store.delete("li")
        assert (await li.get("/api/v1/alarms"))[0] == 401


async def test_a_browser_that_drops_before_any_event_resumes_without_a_gap(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        op = await run.client()
        await op.login("wang")
        cookies = {c.key: c.value for c in op.http.cookie_jar}
        async with aiohttp.ClientSession(cookies=cookies) as http, \
                http.get(f"{run.base}/api/v1/events") as response:
            head = (await response.content.readuntil(b"\n\n")).decode()
        start = next(line.split(": ", 1)[1] for line in head.splitlines()
                     if line.startswith("id: "))
        await run.publish("dev/E1/trapped", "1")  # happens while the browser is away
        await run.wait_alarm(op, "trapped@E1", "active_unacknowledged")
        missed = await read_events(run.base, cookies, 2, last_id=start)
        assert {kind for _, kind, _ in missed} == {"alarm", "work_order"}


async def test_the_live_feed_of_a_deleted_user_stops(mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    async with site_console(tmp_path, mosquitto.port) as run:
        li = await run.client()
        await li.login("li")
        cookies = {c.key: c.value for c in li.http.cookie_jar}
        async with aiohttp.ClientSession(cookies=cookies) as http, \
                http.get(f"{run.base}/api/v1/events") as response:
            with run.users as store:
                store.delete("li")
            async with asyncio.timeout(8):  # checked every few idle seconds
                async for _ in response.content:
                    pass  # ends when the server closes the stream
        assert (await li.get("/api/v1/alarms"))[0] == 401
