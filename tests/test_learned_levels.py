"""Learned levels (rolling baselines) survive a restart: the rule evaluator on the fake clock,
its levels in a real JSON file in a temporary state folder."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from gateway.alarms import LearnedStore, learned_path
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from tests.rules_support import RuleRig

SITE = """
site: {{id: s1, name: s, gateway_id: g}}
state_dir: {state}
devices:
  - {{id: M1, driver: modbus-tcp, host: 127.0.0.1, kind: meter, points: [{{name: kw, address: 0}}]}}
rules:
  - id: night
    kind: meter
    when: {{point: kw, above_baseline: 1.5, min_excess: 100, learn: {learn}, min_samples: 20}}
    category: energy_anomaly
    priority: P2
    message: {{zh: 用电异常, en: unusual use}}
"""


class Run(RuleRig):
    """One gateway run: the evaluator on a feed, until stopped."""

    def __init__(self, config: GatewayConfig, clock: FakeClock, *,
                 save_every: float = 600.0) -> None:
        super().__init__(clock, config, learned=LearnedStore(learned_path(config)),
                         save_every=save_every)
        self.task = asyncio.create_task(self.rules.run(self.feed))

    async def started(self) -> None:
        async with asyncio.timeout(5):  # the file is read in a worker thread
            await self.rules.restored.wait()

    async def send(self, value: float) -> None:
        await self.publish("M1", kw=value)

    async def learn_normal(self) -> None:
        await self.started()
        for i in range(30):  # a normal level around 1000 kW
            await self.send(1000 + (i % 3) * 10)
            await self.clock.advance(60)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def learn_and_stop(config: GatewayConfig, clock: FakeClock) -> None:
    """A run that learns the normal level and stops cleanly (a clean stop writes the
    levels)."""
    run = Run(config, clock)
    await run.learn_normal()
    await run.stop()


async def verdict(config: GatewayConfig, clock: FakeClock) -> list[bool]:
    """What a new run says of one unusual reading (1700 kW), judged as soon as it has
    restored what earlier runs learned."""
    run = Run(config, clock)
    try:
        await run.started()
        await run.send(1700)
        return run.states
    finally:
        await run.stop()


def site(tmp_path: Path, learn: str = "1h") -> GatewayConfig:
    return load_config_text(SITE.format(state=tmp_path, learn=learn))


async def test_a_restart_keeps_what_was_learned(tmp_path: Path, fake_clock: FakeClock) -> None:
    await learn_and_stop(site(tmp_path), fake_clock)
    saved = json.loads((tmp_path / "learned-s1-g.json").read_text())
    assert list(saved["levels"]) == ["night@M1"]

    # Judged at once: no five nights of learning again.
    assert await verdict(site(tmp_path), fake_clock) == [True]


async def test_without_the_file_a_new_run_learns_again(tmp_path: Path,
                                                       fake_clock: FakeClock) -> None:
    # What the test above guards against: the same reading, nothing learned, no verdict.
    await learn_and_stop(site(tmp_path), fake_clock)
    (tmp_path / "learned-s1-g.json").unlink()
    assert await verdict(site(tmp_path), fake_clock) == []


async def test_a_changed_condition_starts_afresh(tmp_path: Path, fake_clock: FakeClock) -> None:
    await learn_and_stop(site(tmp_path), fake_clock)
    learned_for_something_else = site(tmp_path, learn="2h")
    assert await verdict(learned_for_something_else, fake_clock) == []


async def test_levels_are_saved_while_running_not_only_at_a_clean_stop(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    # A power cut gives no clean stop: what was learned up to the last save is kept.
    run = Run(site(tmp_path), fake_clock, save_every=300)
    try:
        await run.learn_normal()  # 30 minutes
        await fake_clock.advance(2)
        for _ in range(50):  # the save runs in a worker thread
            if (tmp_path / "learned-s1-g.json").exists():
                break
            await asyncio.sleep(0.01)
        saved = json.loads((tmp_path / "learned-s1-g.json").read_text())
        ((key, level, samples),) = saved["levels"]["night@M1"]
        # Saved every 5 minutes: at least the first save, with what was learned by then.
        assert key == "kw|3600|None" and 1000 <= level <= 1020 and samples >= 5
    finally:
        await run.stop()


async def test_an_unreadable_file_is_moved_aside_and_learning_starts_afresh(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "learned-s1-g.json").write_text("{not json", encoding="utf-8")
    caplog.set_level(logging.ERROR, logger="gateway.alarms._learned")
    assert await verdict(site(tmp_path), fake_clock) == []
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("learned-s1-g.json.unreadable-*"))  # noqa: ASYNC240 (test file)


def test_no_state_folder_keeps_nothing() -> None:
    config = load_config_text(SITE.replace("state_dir: {state}\n", "").format(learn="1h"))
    assert learned_path(config) is None
    assert LearnedStore(None).load(0.0) == {}
