"""A device's ``offline:`` policy: doors that report only on change are not "offline" because
they are quiet; a door with a heartbeat still is when its heartbeat stops.

The access pack's ``door-offline`` rule (``{stale: 90s}`` for 90 s) runs in the real rule
evaluator on the fake clock; readings go through the bus as the MQTT driver sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway import cli
from gateway.clock import FakeClock
from gateway.config import load_config_text, offline_warnings
from gateway.errors import ConfigError
from tests.rules_support import RuleRig, running_rigs

SITE = """
site: {{id: s, name: s, gateway_id: g}}
brokers: {{local: {{host: 127.0.0.1}}}}
devices:
  - id: "door-{{door}}"
    driver: mqtt
    profile: access-door-mqtt
{extra}
detectors: [access]
"""
HEARTBEAT = """\
    offline: {heartbeat: [heartbeat]}
    points:
      - {name: heartbeat, topic: "acs/{door}/heartbeat", path: seq, type: int}
"""


class Rig(RuleRig):
    async def state(self, door: str, *, open_: bool = False) -> None:
        """One state message of a door (every field of the profile's state topic)."""
        await self.publish(
            f"door-{door}", open=open_, contact="open" if open_ else "closed", locked=True,
            lock="locked", zone=1, controller="c1", alarm="none", forced=False, held=False,
            tamper=False, fire_release=False)

    async def beat(self, door: str, seq: int) -> None:
        await self.publish(f"door-{door}", heartbeat=seq)

    @property
    def seen(self) -> list[tuple[str, bool, float]]:
        return [(d.rule_id, d.active, at)
                for d, at in zip(self.detections, self.at, strict=True)]

    def offline(self) -> list[tuple[bool, float]]:
        return [(active, t) for rule, active, t in self.seen if rule == "access.door-offline"]


@pytest.fixture
async def make_rig(fake_clock: FakeClock) -> AsyncIterator[Callable[[str], Rig]]:
    async with running_rigs() as runner:
        yield lambda extra: runner.start(
            Rig(fake_clock, load_config_text(SITE.format(extra=extra))))


async def test_without_a_policy_a_quiet_door_is_called_offline(
        make_rig: Callable[[str], Rig], fake_clock: FakeClock) -> None:
    """What the site saw: a door that reports only on change, a false alarm per quiet spell."""
    rig = make_rig("")
    await rig.state("D1")
    await fake_clock.advance(3600)
    assert rig.offline() == [(True, 90.0)]


async def test_a_door_that_reports_only_on_change_is_never_called_offline(
        make_rig: Callable[[str], Rig], fake_clock: FakeClock) -> None:
    rig = make_rig("    offline: never")
    # Two days: opened a few times a day, silent for up to 20 hours in between.
    for gap in (3600.0, 20 * 3600, 5 * 3600, 20 * 3600):
        await rig.state("D1", open_=True)
        await fake_clock.advance(5)
        await rig.state("D1")
        await fake_clock.advance(gap)
    assert rig.seen == []


async def test_a_door_with_a_heartbeat_is_offline_when_the_heartbeat_stops(
        make_rig: Callable[[str], Rig], fake_clock: FakeClock) -> None:
    rig = make_rig(HEARTBEAT)
    await rig.state("D1")
    for seq in range(40):  # 20 minutes of a 30 s heartbeat; the state never changes
        await rig.beat("D1", seq)
        await fake_clock.advance(30)
    assert rig.offline() == []
    # The heartbeat stops (last beat at 1170 s). A state message (a retained one replayed
    # after a broker reconnect, say) is no proof of life: only the heartbeat is.
    await rig.state("D1")
    await fake_clock.advance(600)
    assert rig.offline() == [(True, 1170.0 + 90)]
    await rig.beat("D1", 41)
    assert rig.offline()[-1][0] is False


async def test_after_overrides_the_rules_silence_per_device(
        make_rig: Callable[[str], Rig], fake_clock: FakeClock) -> None:
    rig = make_rig("    offline: {after: 10m}")
    await rig.state("D1")
    await fake_clock.advance(599)
    assert rig.offline() == []
    await fake_clock.advance(2)
    assert rig.offline() == [(True, 600.0)]


def test_check_config_warns_about_silence_rules_on_undeclared_and_never_devices() -> None:
    undeclared = load_config_text(SITE.format(extra=""))
    (warning,) = offline_warnings(undeclared)
    assert warning[0] == "devices[0]"
    assert "access.door-offline" in warning[1] and "offline: never" in warning[1]
    never = load_config_text(SITE.format(extra="    offline: never"))
    (warning,) = offline_warnings(never)
    assert warning[0] == "devices[0].offline"
    assert "never fires" in warning[1]
    for declared in (HEARTBEAT, "    stale_after: 90s", "    offline: {after: 90s}"):
        assert offline_warnings(load_config_text(SITE.format(extra=declared))) == []


@pytest.mark.parametrize(("extra", "message"), [
    ("    offline: never\n    stale_after: 90s", "contradicts stale_after"),
    ("    offline: {heartbeat: [pulse]}", "has no point(s) pulse"),
    ("    offline: sometimes", "offline"),
])
def test_offline_mistakes_are_explained(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(SITE.format(extra=extra))
    assert message in str(info.value)


def test_check_config_prints_the_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(extra="    offline: never"), encoding="utf-8")
    assert cli.main(["check-config", str(site)]) == 0
    err = capsys.readouterr().err
    assert "warning: devices[0].offline" in err and "rule access.door-offline" in err
