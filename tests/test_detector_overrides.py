"""How a site's ``detectors:`` entry changes pack rules: params, switches, overrides, ``as``."""

from __future__ import annotations

import pytest

from gateway.config import (
    CommLossCondition,
    GatewayConfig,
    PointCondition,
    RuleConfig,
    StaleCondition,
    load_config_text,
)
from gateway.errors import ConfigError

SITE = """
site: {id: s, name: s, gateway_id: g}
devices:
  - {id: E1, driver: modbus-tcp, host: 127.0.0.1, profile: elevator-modbus}
  - {id: E7, driver: modbus-tcp, host: 127.0.0.2, profile: elevator-modbus}
  - {id: M1, driver: modbus-tcp, host: 127.0.0.3, profile: eastron-sdm630}
detectors:
"""


def load(detectors: str) -> GatewayConfig:
    return load_config_text(SITE + detectors)


def rule(config: GatewayConfig, rule_id: str) -> RuleConfig:
    (found,) = [r for r in config.rules if r.id == rule_id]
    return found


def problems(detectors: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(detectors)
    return str(info.value)


def test_an_override_replaces_when_whole_and_keeps_the_other_keys() -> None:
    pack = rule(load("  - elevator\n"), "elevator.offline")
    config = load("  - use: elevator\n"
                  "    rules:\n"
                  "      offline: {when: {stale: 10s}}\n")
    changed = rule(config, "elevator.offline")
    assert isinstance(pack.when, CommLossCondition)
    assert changed.when == StaleCondition(stale=10.0), "replaced, not merged with comm_loss"
    assert (changed.for_, changed.priority, changed.message, changed.kind) == \
        (pack.for_, pack.priority, pack.message, pack.kind)


def test_message_is_merged_per_language_and_params_work_in_overrides() -> None:
    pack = rule(load("  - energy\n"), "energy.voltage-high")
    config = load("  - use: energy\n"
                  "    params: {voltage_high: 240, voltage_low: 198}\n"
                  "    rules:\n"
                  "      voltage-high:\n"
                  "        message: {en: 'Feeder voltage high: {voltage_l1} V'}\n"
                  "        when: {point: voltage_l1, gt: $voltage_high}\n")
    changed = rule(config, "energy.voltage-high")
    assert changed.message.en == "Feeder voltage high: {voltage_l1} V"
    assert changed.message.zh == pack.message.zh
    assert changed.when == PointCondition(point="voltage_l1", gt=240)
    # Parameters reach the pack's own rules too.
    assert "lt=198.0" in repr(rule(config, "energy.voltage-low").when)


def test_rules_switched_off_and_kept() -> None:
    config = load("  - use: elevator\n"
                  "    rules: {offline: false, overtravel: true}\n")
    ids = {r.id for r in config.rules}
    assert "elevator.offline" not in ids
    assert "elevator.overtravel" in ids


def test_devices_in_an_override_replace_the_pack_kind() -> None:
    config = load("  - use: elevator\n"
                  "    rules:\n"
                  "      offline: {devices: [E7]}\n")
    offline = rule(config, "elevator.offline")
    assert (offline.devices, offline.kind) == (["E7"], None)
    assert rule(config, "elevator.overtravel").kind == "elevator"


def test_the_same_pack_twice_needs_its_own_name() -> None:
    text = problems("  - elevator\n"
                    "  - {use: elevator, devices: [E7], params: {offline_after: 10s}}\n")
    assert "detectors[1]" in text and "already used by detectors[0]" in text
    assert "as: NAME" in text
    assert text.count("used twice") == 0, "one clear problem, not one per rule"
    config = load("  - {use: elevator, devices: [E1]}\n"
                  "  - {use: elevator, as: elevator-e7, devices: [E7],\n"
                  "     params: {offline_after: 10s}}\n")
    assert rule(config, "elevator.offline").devices == ["E1"]
    e7 = rule(config, "elevator-e7.offline")
    assert (e7.devices, e7.for_) == (["E7"], 10.0)


@pytest.mark.parametrize(("detectors", "expected"), [
    ("  - use: elevator\n    rules: {offline: {id: mine}}\n",
     "detectors[0].rules.offline.id (line 9): a pack rule's id cannot be changed"),
    ("  - use: elevator\n    rules: {nope: false}\n", "elevator has no rule 'nope'"),
    ("  - use: elevator\n    params: {nope: 1}\n", "unknown parameter(s) nope"),
    ("  - {use: elevator, as: 'a b'}\n", "detectors[0].as (line 8): expected a name"),
    # A mistake in an override is reported with the entry it came from.
    ("  - use: elevator\n    rules: {offline: {priority: P9}}\n",
     "(in the rule from detectors[0], pack elevator, rule offline)"),
])
def test_override_mistakes_are_explained(detectors: str, expected: str) -> None:
    assert expected in problems(detectors)
