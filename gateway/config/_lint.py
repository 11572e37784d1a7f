"""Warnings: what a valid config file probably gets wrong.

The loader rejects what the gateway cannot run (errors). This module finds what it can run but
most likely not as meant: Modbus addresses copied from a manual in the 40001 style, message
placeholders that name nothing, a site without devices, rules or upstream. ``check-config``
prints them (``--strict`` fails on them) and ``propgw run`` logs them when it starts; they
never stop the gateway, so a site that runs today keeps running after an upgrade.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from gateway.config._conditions import references
from gateway.config._devices import (
    ModbusPoint,
    ModbusRtuDevice,
    ModbusTcpDevice,
    templated_text_warnings,
)
from gateway.config._models import GatewayConfig
from gateway.config._offline import offline_warnings
from gateway.config._references import reference_warnings
from gateway.config._rules import RuleConfig

__all__ = ["MESSAGE_FIELDS", "lint"]

#: Placeholders every rule message may use besides the device's point names (the alarm stage
#: fills them in: see gateway/alarms/_rules.py).
MESSAGE_FIELDS = frozenset({"device", "device_name", "location", "members"})

#: Modicon references: 5-digit numbers whose first digit names the table, counted from 1;
#: with the functions a point written from one is likely to have (holding is the default,
#: kept by whoever copied "30001" and forgot `function: input`). A register point at 1xxxx
#: cannot come from a 1xxxx reference (those are bits): 0x4000 = 16384 is a real address.
_MODICON = (
    (40001, 49999, "holding", ("holding",), "4xxxx", "holding register"),
    (30001, 39999, "input", ("input", "holding"), "3xxxx", "input register"),
    (10001, 19999, "discrete_input", ("discrete_input", "coil"), "1xxxx", "discrete input"),
)
_COIL_REFERENCE = re.compile(r"0\d{4}")
_OCTAL = re.compile(r"0[0-7]+")


def lint(config: GatewayConfig, address_texts: Mapping[str, str] | None = None
         ) -> list[tuple[str, str]]:
    """``(key path, message)`` for each likely mistake, in file order.

    Args:
        config: A config that passed validation.
        address_texts: The Modbus ``address`` values as written in the file, by key path
            (``devices[0].points[3].address``): ``00017`` and ``17`` differ only there.
    """
    texts = address_texts or {}
    found: list[tuple[str, str]] = []
    found += _empty_site(config)
    for i, dev in enumerate(config.devices):
        if isinstance(dev, ModbusTcpDevice | ModbusRtuDevice) and not dev.address_verified:
            for j, point in enumerate(dev.points):
                path = f"devices[{i}].points[{j}].address"
                if not point.address_verified:
                    message = _modicon(point, texts.get(path))
                    if message:
                        found.append((path, message))
    found += templated_text_warnings(config.devices)
    for i, rule in enumerate(config.rules):
        found += _placeholders(config, rule, f"rules[{i}]")
    found += reference_warnings(config.rules, config.devices, config.rule_devices)
    found += offline_warnings(config)
    return found


# --------------------------------------------------------------------------- empty site


def _empty_site(config: GatewayConfig) -> list[tuple[str, str]]:
    found = []
    if not config.devices:
        found.append(("devices", "no devices: the gateway will read nothing"))
    elif not any(d.enabled for d in config.devices):
        found.append(("devices", "every device is disabled: the gateway will read nothing"))
    if not config.rules:
        found.append(("rules", "no rules and no detectors: no alarm will ever be raised "
                               "(add `detectors: [elevator, fire, ...]` or rules)"))
    if config.upstream is None:
        found.append(("upstream", "no upstream: alarms and work orders stay on this gateway "
                                  "(journal and console only), nobody is called out"))
    for i, rule in enumerate(config.rules):
        if not config.rule_devices(rule):
            found.append((f"rules[{i}]", f"rule {rule.id} applies to no enabled device"))
    return found


# --------------------------------------------------------------------------- Modbus addresses


def _modicon(point: ModbusPoint, text: str | None) -> str | None:
    """A message when the address looks like a Modicon reference rather than an address."""
    verified = ("If this really is the device's 0-based address, set `address_verified: "
                "true` on the point (or the device).")
    if text is not None and _COIL_REFERENCE.fullmatch(text.strip()):
        intended = int(text, 10) - 1
        octal = (f" (YAML also reads {text.strip()} as the octal number {point.address}, "
                 f"not {int(text, 10)})" if point.address != int(text, 10) else "")
        return (f"address {text.strip()} looks like a Modicon reference (0xxxx = coils, "
                f"counted from 1) for coil {intended}{octal}; write `address: {intended}, "
                f"function: coil`. {verified}")
    if text is not None and _OCTAL.fullmatch(text.strip()) \
            and point.address != int(text, 10):
        return (f"address {text.strip()}: YAML reads a number with a leading zero as octal, "
                f"so this is address {point.address}, not {int(text, 10)}; write "
                f"`address: {int(text, 10)}`")
    for low, high, table, functions, style, what in _MODICON:
        if low <= point.address <= high and point.function in functions:
            intended = point.address - low
            fix = f"`address: {intended}`" if point.function == table else \
                f"`address: {intended}, function: {table}`"
            return (f"address {point.address} looks like a Modicon reference ({style} = "
                    f"{what}s, counted from 1) for {what} {intended}; write {fix}. {verified}")
    return None


# --------------------------------------------------------------------------- message placeholders


def _placeholders(config: GatewayConfig, rule: RuleConfig, path: str) -> list[tuple[str, str]]:
    devices = config.rule_devices(rule)
    if not devices:
        return []
    # A group rule's message is rendered for the group, which has no point values.
    known = {d.id: MESSAGE_FIELDS | (config.points_of(d) if rule.group_by is None else set())
             for d in devices}
    everything = set().union(*known.values())
    found = []
    for lang in ("zh", "en"):
        template = _without_referenced(getattr(rule.message, lang), rule)
        where = f"{path}.message.{lang}"
        try:
            parsed = [(field, spec, conversion)
                      for _, field, spec, conversion in string.Formatter().parse(template)
                      if field is not None]
        except ValueError as exc:
            found.append((where, f"cannot be filled in ({exc}); it would be sent exactly as "
                                 f"written. Write {{{{ and }}}} for literal braces"))
            continue
        if any(spec or conversion for _, spec, conversion in parsed):
            field, spec, conversion = next(p for p in parsed if p[1] or p[2])
            written = field + (f"!{conversion}" if conversion else "") + (f":{spec}"
                                                                           if spec else "")
            found.append((where, f"{{{written}}}: a format or conversion cannot be applied "
                                 f"(values arrive as display text, 236.4 for a float) and the "
                                 f"message would be sent exactly as written; write "
                                 f"{{{field}}}"))
        names = [(field.split(".")[0].split("[")[0], field) for field, _, _ in parsed]
        for name, field in dict.fromkeys(names):
            if not name or name.isdigit():
                found.append((where, f"{{{field}}} names nothing; use a point name or one of "
                                     f"{', '.join(sorted(MESSAGE_FIELDS))}. Write {{{{ and "
                                     f"}}}} for literal braces"))
                continue
            lacking = sorted(dev for dev, names_ in known.items() if name not in names_)
            if len(lacking) == len(known):
                import difflib  # noqa: PLC0415 - for a mistake's hint only: a gateway that runs never loads it

                close = difflib.get_close_matches(name, sorted(everything), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                valid = "the device's points" if rule.group_by is None else \
                    "nothing but the built-ins in a group_by rule"
                found.append((where, f"{{{name}}} is not a point or built-in placeholder"
                                     f"{hint} It would reach operators as written. Valid: "
                                     f"{', '.join(sorted(MESSAGE_FIELDS))} and {valid}"))
            elif lacking:
                found.append((where, f"{{{name}}} is not a point of {', '.join(lacking)}: "
                                     f"on those devices it would reach operators as written"))
    return found


def _without_referenced(template: str, rule: RuleConfig) -> str:
    """The message without its ``{DEVICE:point}`` placeholders (a referenced device's values,
    filled by the alarm stage), which are not format fields."""
    for ref in references(rule.when):
        template = re.sub(re.escape("{" + ref.device + ":") + r"[A-Za-z0-9][A-Za-z0-9_.\-]*\}",
                          "", template)
    return template
