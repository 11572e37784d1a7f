"""Operator text (gateway.i18n): every bundled category has its titles, and locations read the
same way in Chinese and English wherever they are printed."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms import AlarmEvent, AlarmState
from gateway.clock import FakeClock
from gateway.config import (
    DEFAULT_CATEGORIES,
    DEFAULT_REPORT_CATEGORIES,
    GatewayConfig,
    Location,
    load_config,
    load_config_text,
)
from gateway.i18n import CATEGORY_TITLES, category_title, format_location, language
from gateway.workorders import WorkOrder, WorkOrderDesk, WorkOrderLocation
from tests.hostile_configs import ENV, EXAMPLES

REPO = Path(__file__).resolve().parents[1]
#: Every YAML file that ships: detector packs, profiles, examples, simulator scenarios.
BUNDLED_YAML = sorted([*(REPO / "config").rglob("*.yaml"),
                       *(REPO / "simulators" / "scenarios").glob("*.yaml")])
MINIMAL = "site: {id: s1, name: 阳光花园, gateway_id: gw1}\n"
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _yaml_categories(node: Any, out: set[str]) -> set[str]:
    """Categories a YAML document names: rules' and expectations' ``category``, suppression
    lists, and ``work_orders.categories`` keys."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "category" and isinstance(value, str):
                out.add(value)
            elif key in ("while_active", "suppress") and isinstance(value, list):
                out.update(v for v in value if isinstance(v, str))
            elif key == "categories" and isinstance(value, dict):
                out.update(str(k) for k in value)
            _yaml_categories(value, out)
    elif isinstance(node, list):
        for item in node:
            _yaml_categories(item, out)
    return out


def _code_categories() -> set[str]:
    """Categories the gateway's own code produces (``category="alarm_flood"``)."""
    found: set[str] = set()
    for path in (REPO / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "category" \
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.add(node.value.value)
    return found


def _config_categories(config: GatewayConfig) -> set[str]:
    found = {rule.category for rule in config.rules}
    for rule in config.alarms.suppression:
        found.update([*rule.while_active, *rule.suppress])
    return found


def bundled_categories(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    found: set[str] = set()
    for path in BUNDLED_YAML:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            _yaml_categories(document, found)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for example in sorted(EXAMPLES.glob("*.yaml")):
        found |= _config_categories(load_config(example))
    found |= _config_categories(load_config_text(MINIMAL))  # the built-in defaults
    found |= set(DEFAULT_CATEGORIES) | set(DEFAULT_REPORT_CATEGORIES) | _code_categories()
    return found


def test_every_bundled_category_has_both_titles(monkeypatch: pytest.MonkeyPatch) -> None:
    categories = bundled_categories(monkeypatch)
    # The search itself must work: these come from a pack, a scenario, the code, a default.
    assert {"fire_prealarm", "door_held_open", "alarm_flood", "fire_alarm",
            "elevator_ucm"} <= categories
    assert len(categories) >= 25, sorted(categories)
    missing = sorted(categories - set(CATEGORY_TITLES))
    assert not missing, f"add a zh-CN and English title to gateway.i18n.CATEGORY_TITLES: " \
                        f"{missing}"
    for name in categories:
        zh, en = CATEGORY_TITLES[name]
        assert _CJK.search(zh) and zh.strip() == zh, (name, zh)
        assert en.isascii() and en[:1].isupper() and en.strip() == en, (name, en)
    assert sorted(set(CATEGORY_TITLES) - categories) == [], "a title for nothing bundled"


def test_the_configuration_reference_lists_the_catalogue() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \| ([^|(]+?)(?: \([^|]*\))? \|$", doc,
                      flags=re.M)
    listed = {name: (zh, en) for name, zh, en in rows if _CJK.search(zh)}
    assert listed == {name: tuple(title) for name, title in CATEGORY_TITLES.items()}


def test_config_titles_win_and_unknown_categories_fall_back_to_their_id() -> None:
    config = load_config_text(MINIMAL + """
work_orders:
  categories:
    fire_prealarm: {title: {zh: 烟感预警, en: Smoke pre-alarm}}
    gas_smell: {priority: P0, title: {zh: 燃气异味, en: Gas smell}}
""")
    assert category_title("fire_prealarm", "zh-CN", config) == "烟感预警"
    assert category_title("fire_prealarm", "en", config.work_orders) == "Smoke pre-alarm"
    assert category_title("fire_prealarm") == "火灾预警"
    assert category_title("gas_smell", "en", config) == "Gas smell"
    assert category_title("phase_loss", "zh", config) == "缺相", "built-in kept beside overrides"
    assert category_title("odd_thing", "zh-CN", config) == "odd_thing"
    assert category_title("odd_thing", "en", config) == "Odd thing"


def test_languages_are_zh_cn_and_en() -> None:
    assert [language(x) for x in ("zh", "zh-CN", "zh_Hans", "ZH-cn", "en", "en-US", "en_GB")] \
        == ["zh-CN"] * 4 + ["en"] * 3
    with pytest.raises(ValueError, match="unsupported language 'fr'"):
        format_location(Location(building="1"), "fr")


@pytest.mark.parametrize(("parts", "zh", "en"), [
    ({"building": "1", "floor": "3", "zone": "东区", "room": "301"},
     "1号楼 3层 东区 301室", "Bldg 1, floor 3, zone East, room 301"),
    # A unit already there is not added twice; the other language gets its own.
    ({"building": "1号楼", "floor": "3F"}, "1号楼 3层", "Bldg 1, 3F"),
    ({"building": "A座", "floor": "B1", "zone": "A区", "room": "3-1201"},
     "A座 B1层 A区 3-1201室", "Bldg A, floor B1, zone A, room 3-1201"),
    ({"building": "Bldg 2", "floor": "F12", "room": "Rm 5"}, "2号楼 12层 5室", "Bldg 2, F12, Rm 5"),
    ({"floor": "-1层", "zone": "East"}, "-1层 东区", "floor -1, zone East"),
    ({"building": "2栋", "floor": "3楼"}, "2栋 3楼", "Bldg 2, floor 3"),
    # Names are printed as written (English still calls a zone a zone).
    ({"building": "配电房"}, "配电房", "配电房"),
    ({"building": "Tower B", "floor": "Lobby"}, "Tower B Lobby", "Tower B, Lobby"),
    ({"zone": "feeder-A"}, "feeder-A", "zone feeder-A"),
    ({"zone": "2"}, "2区", "zone 2"),
    ({"building": " ", "floor": None}, "位置未配置", "location not set"),
])
def test_locations_read_the_same_way_everywhere(parts: dict[str, str | None], zh: str,
                                                en: str) -> None:
    location = Location.model_validate(parts)
    assert format_location(location, "zh-CN") == zh
    assert format_location(location, "en") == en
    assert format_location(parts, "en") == en, "a work order as JSON works too"


def test_a_work_order_location_ends_with_its_device() -> None:
    where = WorkOrderLocation(site="s1", building="1", zone="东区", device="E1",
                              device_name="1号楼1号梯")
    assert format_location(where, device=where.device_name) == "1号楼 东区 1号楼1号梯"
    assert format_location(where, "en", device=where.device_name) == \
        "Bldg 1, zone East, 1号楼1号梯"
    assert format_location({}, "en", device="E1") == "E1"


@pytest.mark.parametrize(("category", "zh", "en"), [
    ("fire_prealarm", "火灾预警：FACP-1 防区2", "Fire pre-alarm: FACP-1 防区2"),
    ("device_offline", "设备离线：FACP-1 防区2", "Device offline: FACP-1 防区2"),
    ("access_invalid_cards", "多次无效刷卡：FACP-1 防区2",
     "Repeated invalid cards: FACP-1 防区2"),
])
async def test_work_order_titles_use_the_catalogue(fake_clock: FakeClock, category: str,
                                                   zh: str, en: str) -> None:
    async def sink(order: WorkOrder) -> None:
        return None

    config = load_config_text(MINIMAL)
    desk = WorkOrderDesk(config.site, fake_clock, sink, policies=config.work_orders)
    order = await desk.handle(AlarmEvent(
        alarm_id="x@FACP-1-zone-2", rule_id="x", device="FACP-1-zone-2",
        device_name="FACP-1 防区2", category=category, priority="P1",
        state=AlarmState.ACTIVE, message_zh="m", message_en="m", location=Location(zone="2"),
        ts=1.5e9, condition_since=1.5e9, mono=0.0, evidence={}))
    assert order is not None and (order.title.zh, order.title.en) == (zh, en)


def test_every_health_reason_has_console_text_in_both_languages() -> None:
    """The console shows a reason by its text; a code without one would show as a raw id."""
    root = Path(__file__).resolve().parents[1]
    source = (root / "gateway" / "health.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'Reason\(\s*"([a-z_]+)"', source))
    assert {"upstream_down", "telemetry_shed", "influxdb_down"} <= codes
    strings = (root / "gateway" / "console" / "static" / "js" / "strings.js").read_text(
        encoding="utf-8")
    for code in sorted(codes):
        assert strings.count(f'"health.{code}":') == 2, f"health.{code}: zh-CN and en"
