"""A real gateway with its console on a free loopback port, an MQTT elevator and fire panel on a
real mosquitto, and users in a real user file: what the console tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from gateway.app import Gateway
from gateway.clock import Clock
from gateway.config import GatewayConfig, load_config_text
from gateway.console import UserStore, users_path

STATUS_TOKEN = "console-status-token-0123"
PASSWORD = "correct horse battery"

SITE = """
site: {{id: cs, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream:
  http: {{url: "http://127.0.0.1:9/unused"}}
  status_api: {{token: {token}}}
console: {{port: 0}}
devices:
  - {{id: E1, name: 1号梯, driver: mqtt, kind: elevator,
     location: {{building: "1号楼", floor: "3", zone: 东区}},
     points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}
  - {{id: W1, name: 水泵房, driver: mqtt, kind: water_sensor, location: {{building: "2号楼"}},
     points: [{{name: wet, topic: dev/W1/wet, type: int}}]}}
rules:
  - {{id: trapped, devices: [E1], when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 电梯困人, en: passenger trapped}}}}
  - {{id: leak, devices: [W1], when: {{point: wet, eq: 1}}, latching: true,
     category: water_leak, priority: P1, message: {{zh: 漏水, en: water leak}}}}
"""

USERS = {"wang": "operator", "li": "viewer", "zhao": "engineer", "admin": "admin"}


def console_config(tmp_path: Path, mqtt_port: int) -> GatewayConfig:
    return load_config_text(SITE.format(state=tmp_path / "state", port=mqtt_port,
                                        token=STATUS_TOKEN))


def add_users(config: GatewayConfig, users: dict[str, str] = USERS) -> None:
    path = users_path(config)
    assert path is not None
    with UserStore(path) as store:
        for name, role in users.items():
            store.add(name, role, PASSWORD)  # type: ignore[arg-type]


@dataclass
class Client:
    """One browser-like HTTP client: cookie jar, CSRF token."""

    base: str
    http: aiohttp.ClientSession
    csrf: str = ""

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with self.http.post(f"{self.base}/api/v1/session",
                                  json={"name": name, "password": password}) as response:
            if response.status == 200:
                self.csrf = (await response.json())["csrf_token"]
            await response.read()
            return response

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.base}{path}") as response:
            return response.status, await _body(response)

    async def post(self, path: str, body: dict[str, Any], *, csrf: bool = True,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {**({"X-CSRF-Token": self.csrf} if csrf else {}), **(headers or {})}
        async with self.http.post(f"{self.base}{path}", json=body,
                                  headers=headers) as response:
            return response.status, await _body(response)


async def logged_in(base: str, sessions: list[aiohttp.ClientSession], name: str) -> Client:
    """A client of the console at ``base``, logged in as ``name``; its HTTP session is added
    to ``sessions`` for the caller to close."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    sessions.append(http)
    client = Client(base, http)
    assert (await client.login(name, PASSWORD)).status == 200
    return client


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class Running:
    gateway: Gateway
    base: str
    mqtt_port: int
    clients: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def users(self) -> UserStore:
        """The gateway's user file, opened as `propgw users` would (another writer)."""
        path = users_path(self.gateway.config)
        assert path is not None
        return UserStore(path)

    async def client(self) -> Client:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.clients.append(http)
        return Client(self.base, http)

    async def publish(self, topic: str, payload: str) -> None:
        async with aiomqtt.Client("127.0.0.1", self.mqtt_port) as client:
            await client.publish(topic, payload, qos=1, retain=True)

    async def wait_alarm(self, client: Client, alarm_id: str, state: str,
                         deadline: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(deadline):
            while True:
                status, body = await client.get(f"/api/v1/alarms/{alarm_id}")
                if status == 200 and body["state"] == state:
                    return dict(body)
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_console(config: GatewayConfig, mqtt_port: int, *,
                          clock: Clock | None = None) -> AsyncIterator[Running]:
    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(shutdown_trigger=stop.wait), name="gateway")
    run = None
    try:
        async with asyncio.timeout(10):
            await gateway.started.wait()
            assert gateway.web is not None
            await gateway.web.serving.wait()
            while gateway.drivers[0].health().counters.get("subscribed", 0) < 1:
                await asyncio.sleep(0.01)
        run = Running(gateway, f"http://127.0.0.1:{gateway.web.port}", mqtt_port)
        yield run
    finally:
        if run is not None:
            for http in run.clients:
                await http.close()
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def site_console(tmp_path: Path, mqtt_port: int) -> AsyncIterator[Running]:
    """The usual test site (elevator E1, leak sensor W1) with its users, running."""
    config = console_config(tmp_path, mqtt_port)
    add_users(config)
    async with running_console(config, mqtt_port) as run:
        yield run
