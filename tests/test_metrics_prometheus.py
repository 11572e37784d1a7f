"""A real Prometheus (Debian's 2.42) scrapes the gateway's /metrics every second; the series
are queried back through its HTTP API while readings flow and after an alarm is raised."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import load_config_text
from simulators.elevator import ElevatorSim
from simulators.modbus_server import SimModbusServer
from tests.prometheus_support import Prometheus
from tests.support import free_port

TOKEN = "scrape-token-0123456789abcdef"
#: Upstream to a broker nobody runs: the alarm and its work order wait in the outbox.
SITE = """
site: {{id: prom, name: p, gateway_id: gw1}}
brokers:
  platform: {{host: 127.0.0.1, port: {mqtt}, reconnect: {{initial: 0.1, max: 1}}}}
upstream: {{broker: platform}}
metrics: {{port: {metrics}, token: {token}, loop_lag_interval: 100ms}}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    port: {e1}
    profile: elevator-modbus
    poll_interval: 100ms
    timeout: 500ms
rules:
  - id: trapped
    kind: elevator
    for: 1s
    when:
      all:
        - {{point: car_status, eq: 0}}
        - {{point: door_zone, eq: 2}}
        - {{point: door_status, eq: 1}}
        - any: [{{point: passenger_status, eq: 1}}, {{point: alarm_button, eq: 1}}]
    category: elevator_entrapment
    priority: P0
    message: {{zh: "困人", en: "trapped"}}
"""


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[Prometheus]:
    """Prometheus scraping 127.0.0.1:<metrics_port> every second with the bearer token."""
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = Prometheus(workdir, metrics_port, token=TOKEN)
    with server.running():
        yield server


async def until(prom: Prometheus, promql: str) -> list[dict[str, Any]]:
    """Query every 0.5 s until the result is not empty; fail after 20 s."""
    async with asyncio.timeout(20):
        while True:
            result = await asyncio.to_thread(prom.query, promql)
            if result:
                return result
            await asyncio.sleep(0.5)


def number(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.mark.slow
async def test_a_real_prometheus_scrapes_readings_outbox_and_alarms(
        prometheus: Prometheus, metrics_port: int) -> None:
    e1 = ElevatorSim("E1", traffic=False)
    e1.model.position = 5.0
    e1.model.occupied = True
    e1.refresh()
    async with SimModbusServer([e1.unit], port=free_port()) as sim:
        config = load_config_text(SITE.format(mqtt=free_port(), metrics=metrics_port,
                                              token=TOKEN, e1=sim.port))
        gateway = Gateway(config)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(gateway.run(shutdown_trigger=stop.wait))
            sim_task = tg.create_task(e1.run())
            try:
                await gateway.started.wait()
                assert number(await until(prometheus, 'up{job="propgw"} == 1')) == 1
                link = f"modbus[127.0.0.1:{sim.port}]"
                rate = await until(prometheus, "rate(propgw_readings_total[5s]) > 0")
                assert [r["metric"]["link"] for r in rate] == [link]
                assert number(rate) > 5, "elevator points every 100 ms"
                latency = await until(
                    prometheus, f'propgw_modbus_request_duration_seconds_count{{link="{link}"}}'
                                " > 0")
                assert number(latency) > 0
                await until(prometheus, "propgw_event_loop_lag_seconds_count > 0")
                assert number(await until(
                    prometheus, 'propgw_upstream_up{target="mqtt"}')) == 0

                e1.model.position = 5.5
                e1.model.stop_between_floors()
                e1.refresh()
                alarms = await until(prometheus, 'propgw_alarms{priority="P0"} > 0')
                assert [(a["metric"]["state"], a["value"][1]) for a in alarms] == \
                    [("active_unacknowledged", "1")]
                assert number(await until(
                    prometheus, 'sum(propgw_alarms{priority="P1"})')) == 0
                # The alarm and its work order wait for the broker nobody runs.
                pending = await until(
                    prometheus, 'propgw_outbox_pending_messages{target="mqtt"} >= 2')
                assert number(pending) == 2
                await until(prometheus,
                            'propgw_outbox_oldest_pending_age_seconds{target="mqtt"} > 1')
                targets = await asyncio.to_thread(prometheus.targets)
                assert [t["health"] for t in targets] == ["up"]
            finally:
                stop.set()
                sim_task.cancel()
