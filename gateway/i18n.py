"""What operators read, in Simplified Chinese (the default) and English: category titles and
locations.

The gateway's people-facing text comes in two languages. Rules carry their own messages; what
this module adds is the text the gateway composes itself, so that the work-order desk, the
alarm messages and the operator console say it the same way:

* **Category titles.** Every category the bundled detector packs, examples and simulator
  scenarios can produce has a title in :data:`CATEGORY_TITLES`. A site overrides (or adds) one
  under ``work_orders.categories.<name>.title``; :func:`category_title` reads the config first.
  An unknown category falls back to its id (English: the id as words).
* **Locations.** :func:`format_location` writes building, floor, zone, room (and optionally
  the device) in one style: ``1号楼 3层 东区 301室`` and ``Bldg 1, floor 3, zone East,
  room 301``. A value that is a bare code (``1``, ``B1``, ``A``, ``3-1201``) gets the field's
  unit; a value that already carries one keeps it as written in its own language and is
  re-labelled in the other (``1号楼`` is ``Bldg 1`` in English, ``3F`` is ``3层`` in Chinese);
  a name (``配电房``, ``Tower B``) is printed as it is, except that English calls a zone
  a zone (``zone feeder-A``).

This module imports nothing from the rest of the gateway at run time, so the config package
can take its defaults from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, cast

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, WorkOrdersConfig

__all__ = [
    "CATEGORY_TITLES",
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "Language",
    "Title",
    "category_title",
    "format_location",
    "language",
]

Language = Literal["zh-CN", "en"]
#: The languages people are addressed in; the first is the default.
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")
DEFAULT_LANGUAGE: Language = "zh-CN"


class Title(NamedTuple):
    """A category's title in both languages."""

    zh: str
    en: str


#: The built-in title of every category a bundled detector pack, example, scenario or the
#: gateway itself (``alarm_flood``) can produce. ``work_orders.categories.<name>.title``
#: overrides one per site. tests/test_i18n.py fails when a bundled category has none.
CATEGORY_TITLES: Mapping[str, Title] = MappingProxyType({
    # Elevators
    "elevator_entrapment": Title("电梯困人", "Elevator entrapment"),
    "elevator_ucm": Title("电梯意外移动", "Unintended car movement"),
    "elevator_fault": Title("电梯故障", "Elevator fault"),
    "elevator_door": Title("电梯门异常", "Elevator door fault"),
    # Fire alarm system
    "fire_alarm": Title("火警", "Fire alarm"),
    "fire_prealarm": Title("火灾预警", "Fire pre-alarm"),
    "fire_supervisory": Title("消防监管报警", "Fire supervisory signal"),
    "fire_linkage": Title("消防联动异常", "Fire linkage without alarm"),
    "fire_fault": Title("消防设备故障", "Fire equipment fault"),
    "fire_impairment": Title("消防设备屏蔽", "Fire equipment disabled"),
    "fire_operator_action": Title("消防主机操作", "Fire panel operator action"),
    "fire_door_locked": Title("疏散门未解锁", "Exit door locked in fire"),
    # Access control
    "duress": Title("胁迫报警", "Duress alarm"),
    "door_forced": Title("门被强行打开", "Door forced open"),
    "door_held_open": Title("门长时间未关", "Door held open"),
    "access_invalid_cards": Title("多次无效刷卡", "Repeated invalid cards"),
    "access_anti_passback": Title("反潜回报警", "Anti-passback violation"),
    "access_tamper": Title("读卡器防拆报警", "Reader tamper"),
    # Power and water
    "power_loss": Title("停电", "Power loss"),
    "phase_loss": Title("缺相", "Phase loss"),
    "voltage_out_of_band": Title("电压异常", "Voltage out of range"),
    "overload": Title("用电过载", "Electrical overload"),
    "abnormal_consumption": Title("异常用电", "Abnormal consumption"),
    "water_leak": Title("漏水", "Water leak"),
    # Reported by people (the report catalogue, ``reports.categories``)
    "access_fault": Title("门禁故障", "Access control fault"),
    "noise": Title("噪音", "Noise"),
    "facility_damage": Title("公共设施损坏", "Damaged shared facilities"),
    "other_repair": Title("其他报修", "Other repair"),
    # Any device, and the gateway itself
    "device_offline": Title("设备离线", "Device offline"),
    "data_quality": Title("数据质量", "Data quality"),
    "alarm_flood": Title("报警泛滥", "Alarm flood"),
})


def language(lang: str) -> Language:
    """The supported language ``lang`` names: ``zh``, ``zh-CN``, ``zh_Hans`` ... are
    ``zh-CN``; ``en``, ``en-US`` ... are ``en``.

    Raises:
        ValueError: Neither Chinese nor English.
    """
    primary = lang.strip().replace("_", "-").split("-", 1)[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    raise ValueError(f"unsupported language {lang!r}: expected one of {', '.join(LANGUAGES)}")


def category_title(category: str, lang: str = DEFAULT_LANGUAGE,
                   config: GatewayConfig | WorkOrdersConfig | None = None) -> str:
    """The title of an alarm category, as work orders and the console show it.

    Args:
        category: The category id, e.g. ``fire_prealarm``.
        lang: ``zh-CN`` (default) or ``en`` (see :func:`language`).
        config: The site's config (or its ``work_orders``), whose
            ``categories.<name>.title`` wins over the built-in title; then the report
            catalogue's title (``reports.categories.<name>.title``).

    Returns:
        The title; for a category nobody gave one, the id (English: the id as words).

    Raises:
        ValueError: ``lang`` is not a supported language.
    """
    zh = language(lang) == "zh-CN"
    # Duck-typed: the config package imports this module, so this one cannot import it.
    policies = cast("WorkOrdersConfig | None", getattr(config, "work_orders", config))
    override = policies.categories.get(category) if policies is not None else None
    if override is not None and override.title is not None:
        return override.title.zh if zh else override.title.en
    reports = getattr(getattr(config, "reports", None), "categories", None) or {}
    report = reports.get(category)
    if report is not None:  # a report catalogue entry, the site's own ones included
        return str(report.title.zh if zh else report.title.en)
    title = CATEGORY_TITLES.get(category)
    if title is not None:
        return title.zh if zh else title.en
    return category if zh else category.replace("_", " ").capitalize()


def format_location(location: object, lang: str = DEFAULT_LANGUAGE, *,
                    device: str | None = None) -> str:
    """A location as operators read it: ``1号楼 3层 东区 301室`` or ``Bldg 1, floor 3, zone
    East, room 301``.

    Args:
        location: Anything with ``building``, ``floor``, ``zone`` and ``room`` (a device's
            config location, a work order's location), or a mapping with those keys (a work
            order as JSON). Missing or empty parts are left out.
        lang: ``zh-CN`` (default) or ``en`` (see :func:`language`).
        device: A device name to end with (``… 1号梯``).

    Returns:
        The text; ``位置未配置`` / ``location not set`` when there is nothing to say.

    Raises:
        ValueError: ``lang`` is not a supported language.
    """
    zh = language(lang) == "zh-CN"
    parts = [_place(field, text, zh=zh) for field in _FIELDS
             if (text := _part(location, field.name))]
    if device and device.strip():
        parts.append(device.strip())
    if not parts:
        return "位置未配置" if zh else "location not set"
    return " ".join(parts) if zh else ", ".join(parts)


# --------------------------------------------------------------------------- location parts


@dataclass(frozen=True)
class _Field:
    name: str
    #: How a code is written in Chinese: a template with {} for the code.
    zh: str
    #: In English.
    en: str
    #: Units a Chinese value may already carry after its code (longest first).
    zh_units: tuple[str, ...]
    #: English units before the code (case-insensitive, longest first)...
    en_prefixes: tuple[str, ...]
    #: ... and after it (a number only: 3F).
    en_suffixes: tuple[str, ...] = ()
    #: For buildings: how a code that is not a plain number is written in Chinese.
    zh_named: str | None = None
    #: English labels a Latin-script name too: zones are named areas ("zone feeder-A"),
    #: while a named building, floor or room says what it is ("Tower B", "Lobby").
    en_label_names: bool = False


_FIELDS = (
    _Field("building", zh="{}号楼", zh_named="{}座", en="Bldg {}",
           zh_units=("号楼", "栋", "幢", "座"), en_prefixes=("building", "bldg.", "bldg")),
    _Field("floor", zh="{}层", en="floor {}", zh_units=("层", "楼"),
           en_prefixes=("floor", "level", "f", "l"), en_suffixes=("f",)),
    _Field("zone", zh="{}区", en="zone {}", zh_units=("区",), en_prefixes=("zone",),
           en_label_names=True),
    _Field("room", zh="{}室", en="room {}", zh_units=("室", "房", "号"),
           en_prefixes=("room", "rm.", "rm")),
)

#: A bare code: short letters/digits, with a digit unless it is one or two letters (A, B2,
#: 12, 3-1201, -1).
_CODE = re.compile(r"-?(?=[A-Za-z0-9-]{1,12}$)(?:[A-Za-z]{1,2}|[A-Za-z0-9-]*[0-9][A-Za-z0-9-]*)")
#: Compass zones, which Chinese sites name their areas by.
_DIRECTIONS = {"东": "East", "西": "West", "南": "South", "北": "North", "中": "Central",
               "东南": "Southeast", "东北": "Northeast", "西南": "Southwest",
               "西北": "Northwest"}
_DIRECTIONS_EN = {en.lower(): zh for zh, en in _DIRECTIONS.items()}


def _part(location: object, name: str) -> str:
    value = location.get(name) if isinstance(location, Mapping) else \
        getattr(location, name, None)
    return str(value).strip() if value is not None else ""


def _place(field: _Field, text: str, *, zh: bool) -> str:
    """One part: the code with the language's unit, or the text as written."""
    written_zh, written_en, code = _parse(field, text)
    if zh:
        if written_zh:
            return text
        if code is None:
            return text
        if field.name == "zone" and code.lower() in _DIRECTIONS_EN:
            return f"{_DIRECTIONS_EN[code.lower()]}区"
        if field.zh_named and not code.lstrip("-").isdigit():
            return field.zh_named.format(code)
        return field.zh.format(code)
    if written_en:
        return text
    if code is None:
        latin = field.en_label_names and text.isascii() and \
            not text.lower().startswith(field.en_prefixes)
        return field.en.format(text) if latin else text
    if field.name == "zone" and code in _DIRECTIONS:
        return field.en.format(_DIRECTIONS[code])
    return field.en.format(code)


def _parse(field: _Field, text: str) -> tuple[bool, bool, str | None]:
    """(carries a Chinese unit, carries an English unit, the code or None for a name)."""
    for unit in field.zh_units:
        stem = text.removesuffix(unit).strip()
        if stem != text and _is_code(stem, field):
            return True, False, stem
    lowered = text.lower()
    for prefix in field.en_prefixes:
        stem = text[len(prefix):].strip()
        # "Bldg 1", "Bldg.1", "F3"; not "Fa" or "Lobby".
        if lowered.startswith(prefix) and stem and _is_code(stem, field) \
                and (prefix.endswith(".") or not text[len(prefix)].isalpha()):
            return False, True, stem
    for suffix in field.en_suffixes:
        stem = text[:-len(suffix)].strip()
        if lowered.endswith(suffix) and stem and stem.lstrip("-").isdigit():
            return False, True, stem
    if _is_code(text, field):
        return False, False, text
    return False, False, None


def _is_code(text: str, field: _Field) -> bool:
    if field.name == "zone" and (text in _DIRECTIONS or text.lower() in _DIRECTIONS_EN):
        return True
    return _CODE.fullmatch(text) is not None
