"""The telemetry stage on the fake clock: selection, batching per device, flush on size, and
its place in the outbox (after alarms and work orders, shed first) and on the bus (drops,
never blocks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.bus import Bus, Overflow
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading, Value
from gateway.outbox import Outbox, OutboxItem
from gateway.telemetry import TelemetryStage
from gateway.upstream import TelemetryMessage

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
brokers: {{platform: {{host: 127.0.0.1, port: 1883}}}}
upstream: {{broker: platform, topic_prefix: pm}}
telemetry:
{telemetry}
devices:
  - id: M1
    name: 1号楼总表
    kind: energy_meter
    driver: modbus-tcp
    host: 127.0.0.1
    location: {{building: "1", floor: B1, room: 配电室}}
    points:
      - {{name: power, address: 0, type: float32, unit: kW}}
      - {{name: energy, address: 2, type: float32, unit: kWh}}
      - {{name: energy_raw, address: 4, type: uint32}}
  - id: M2
    kind: energy_meter
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {{name: power, address: 0, type: float32, unit: kW}}
  - id: E1
    kind: elevator
    driver: modbus-tcp
    host: 127.0.0.1
    points: [{{name: floor, address: 0, type: int16}}, {{name: door, address: 1, type: int16}},
             {{name: load, address: 2, type: int16}}, {{name: speed, address: 3, type: int16}},
             {{name: mode, address: 4, type: int16}}]
"""

DEFAULT = """
  exclude: [{points: ["*_raw"]}]
  overrides:
    - {kinds: [energy_meter], points: [energy], deadband_percent: 0, min_interval: 60s}
"""

OUTBOX_TARGETS = {"mqtt": {"work-orders", "alarms", "telemetry"}}
WALL0 = 1_767_225_600.0


def config(telemetry: str = DEFAULT) -> GatewayConfig:
    return load_config_text(SITE.format(telemetry=telemetry))


@dataclass
class Rig:
    clock: FakeClock
    bus: Bus
    outbox: Outbox
    stage: TelemetryStage

    async def read(self, device: str, point: str, value: Value,
                   quality: Quality = Quality.GOOD) -> None:
        await self.bus.publish(Reading(device, point, value, quality,
                                       received_ts=self.clock.time(), source_ts=WALL0 - 1))

    async def advance(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            await self.clock.advance(1)

    async def sent(self) -> list[TelemetryMessage]:
        """Every telemetry message queued since the last call, in send order."""
        await self.clock.advance(0)
        out = []
        while self.outbox.pending("mqtt"):
            env = await self.outbox.next("mqtt")
            self.outbox.delivered("mqtt", env)
            if env.kind == "telemetry":
                message = TelemetryMessage.model_validate_json(env.payload)
                assert env.channel == f"telemetry/{message.device}"
                assert env.key == message.id
                out.append(message)
        return out


@asynccontextmanager
async def rig(cfg: GatewayConfig, clock: FakeClock, *, max_messages: int = 50_000,
              path: Path | None = None, run: bool = True) -> AsyncIterator[Rig]:
    bus = Bus()
    assert cfg.telemetry is not None
    feed = bus.subscribe("telemetry", maxsize=cfg.telemetry.queue, overflow=Overflow.DROP_OLDEST)
    async with Outbox(path, targets=OUTBOX_TARGETS, clock=clock,
                      max_messages=max_messages) as outbox:
        stage = TelemetryStage(cfg, clock, outbox, feed)
        the_rig = Rig(clock, bus, outbox, stage)
        if not run:
            yield the_rig
            return
        task = asyncio.create_task(stage.run())
        try:
            yield the_rig
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def points(message: TelemetryMessage) -> dict[str, tuple[Any, str, str]]:
    return {p.point: (p.value, p.quality, p.reason) for p in message.points}


async def test_one_message_per_device_with_the_points_due(fake_clock: FakeClock) -> None:
    async with rig(config(), fake_clock) as r:
        for point, value in (("power", 42.5), ("energy", 1000.0), ("energy_raw", 7)):
            await r.read("M1", point, value)
        await r.read("M2", "power", 3.0)
        await r.read("E1", "floor", 3)
        await r.read("E9", "floor", 3)  # not in the config: never reported
        assert await r.sent() == [], "nothing before the flush timer"
        await r.advance(1)
        messages = await r.sent()
        assert sorted(m.device for m in messages) == ["E1", "M1", "M2"]
        m1 = next(m for m in messages if m.device == "M1")
        assert points(m1) == {"power": (42.5, "good", "first"),
                              "energy": (1000.0, "good", "first")}, "energy_raw is excluded"
        assert m1.kind == "energy_meter"
        assert (m1.location.building, m1.location.floor, m1.location.device_name) == \
            ("1", "B1", "1号楼总表")
        power = next(p for p in m1.points if p.point == "power")
        assert power.unit == "kW"
        assert power.source_at == "2025-12-31T23:59:59.000+00:00"
        assert power.received_at == "2026-01-01T00:00:00.000+00:00"
        assert (m1.site_id, m1.gateway_id, m1.schema_version) == ("s1", "gw1", 1)

        # Within the band (0.5 % of 42.5), and energy's own override (any change, >= 60 s).
        await r.advance(10)
        await r.read("M1", "power", 42.6)
        await r.read("M1", "energy", 1000.5)
        await r.advance(1)
        assert await r.sent() == []
        await r.read("M1", "power", 50.0)
        await r.advance(1)
        [msg] = await r.sent()
        assert points(msg) == {"power": (50.0, "good", "change")}
        await r.advance(48)
        [msg] = await r.sent()
        assert points(msg) == {"energy": (1000.5, "good", "change")}, "at 60 s, the override"
        stats = r.stage.stats()
        assert stats.messages == 5
        assert stats.reported == 6
        assert stats.reported_by_reason["first"] == 4
        assert stats.suppressed == 1
        assert stats.not_selected == 2  # energy_raw and E9


async def test_a_device_with_many_points_due_is_sent_at_once_in_several_messages(
        fake_clock: FakeClock) -> None:
    cfg = config("  max_points_per_message: 2\n")
    async with rig(cfg, fake_clock) as r:
        for i, point in enumerate(("floor", "door", "load", "speed", "mode")):
            await r.read("E1", point, i)
        # No time has passed: a full batch does not wait for the timer; the device's whole
        # batch goes, split.
        messages = await r.sent()
        assert fake_clock.monotonic() == 1000.0
        assert [[p.point for p in m.points] for m in messages] == [
            ["floor", "door"], ["load", "speed"], ["mode"]]
        assert len({m.id for m in messages}) == 3, "every message has its own id"
        await r.read("M2", "power", 1.0)  # one point: waits for the timer
        assert await r.sent() == []
        await r.advance(1)
        assert len(await r.sent()) == 1


async def test_quality_changes_and_heartbeats_reach_the_outbox(fake_clock: FakeClock) -> None:
    cfg = config("  defaults: {min_interval: 10s, max_interval: 5m}\n")
    async with rig(cfg, fake_clock) as r:
        await r.read("M2", "power", 3.0)
        await r.advance(1)
        await r.sent()
        await r.advance(20)
        await r.read("M2", "power", None, Quality.COMM_LOSS)
        await r.advance(1)
        [lost] = await r.sent()
        assert points(lost) == {"power": (None, "comm-loss", "quality")}
        await r.advance(300)
        [beat] = await r.sent()
        assert points(beat) == {"power": (None, "comm-loss", "heartbeat")}


async def test_telemetry_is_shed_before_alarms_and_work_orders(
        fake_clock: FakeClock, tmp_path: Path) -> None:
    async with rig(config(), fake_clock, max_messages=6, path=tmp_path / "o.sqlite3") as r:
        for device in ("M1", "M2", "E1"):
            await r.read(device, "power" if device != "E1" else "floor", 1.0)
        await r.advance(1)
        assert r.outbox.pending("mqtt") == 3
        for i in range(3):
            await r.outbox.put(OutboxItem(kind="alarm", channel="alarms", priority="P2",
                                          key=f"a{i}", payload=b"{}"))
        for i in range(2):
            await r.outbox.put(OutboxItem(kind="work_order", channel="work-orders",
                                          priority="P3", key=f"w{i}", payload=b"{}"))
        # 8 messages for room for 6: the two oldest telemetry messages went.
        assert r.outbox.pending("mqtt") == 6
        assert r.stage.stats().shed == 2
        # New telemetry while only alarms, work orders and one telemetry are left: the
        # telemetry goes, never an alarm.
        await r.read("E1", "door", 1)
        await r.read("E1", "load", 1)
        await r.advance(1)
        kinds = []
        while r.outbox.pending("mqtt"):
            env = await r.outbox.next("mqtt")
            r.outbox.delivered("mqtt", env)
            kinds.append(env.kind)
        assert kinds == ["alarm"] * 3 + ["work_order"] * 2 + ["telemetry"], \
            "alarms and work orders first; one telemetry message left"
        assert r.stage.stats().shed == 3
        assert r.outbox.shed_by_kind == {"telemetry": 3}


async def test_a_stage_that_falls_behind_drops_readings_and_never_blocks_the_bus(
        fake_clock: FakeClock) -> None:
    cfg = config("  queue: 100\n")
    async with rig(cfg, fake_clock, run=False) as r:
        async with asyncio.timeout(5):
            for i in range(1000):
                await r.read("E1", "floor", i)
        assert r.stage.stats().dropped == 900
        assert r.bus.subscriptions[0].queue.qsize() == 100


async def test_the_message_is_valid_json_with_non_finite_values_as_text(
        fake_clock: FakeClock) -> None:
    async with rig(config(), fake_clock) as r:
        await r.read("M1", "power", float("nan"))
        await r.advance(1)
        [msg] = await r.sent()
        assert points(msg)["power"] == ("nan", "good", "first")
        json.loads(msg.model_dump_json())


@pytest.mark.parametrize("telemetry", [
    "  enabled: false\n",
])
async def test_a_disabled_section_sends_nothing(telemetry: str) -> None:
    from gateway.app import Gateway

    gateway = Gateway(config(telemetry))
    assert gateway.telemetry is None
    assert all(s.name != "telemetry" for s in gateway.bus.subscriptions)


async def test_a_reload_with_a_new_device_reports_it(fake_clock: FakeClock) -> None:
    async with rig(config(), fake_clock) as r:
        await r.read("M3", "power", 1.0)
        await r.advance(1)
        assert await r.sent() == []
        grown = SITE.format(telemetry=DEFAULT) + """
  - {id: M3, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.9,
     points: [{name: power, address: 0, type: float32}]}
"""
        r.stage.reconfigure(load_config_text(grown))
        await r.read("M3", "power", 1.0)
        await r.advance(1)
        [msg] = await r.sent()
        assert points(msg) == {"power": (1.0, "good", "first")}
