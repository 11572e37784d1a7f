"""Detector packs: ready-made rules for one facility system, enabled with one line.

A site file says::

    detectors:
      - elevator                       # every rule of config/detectors/elevator.yaml
      - use: energy
        params: {nominal_voltage: 220}  # override a threshold
        rules:
          night-consumption: false      # switch one rule off
          overload-alarm: {priority: P1}

and the loader turns that into ordinary ``rules:`` entries (ids prefixed with the pack name,
e.g. ``elevator.trapped-between-floors``, or with ``as:``) before validation. In a pack, a
value written as ``$name`` is replaced by the parameter ``name``.

A pack rule may depend on the site's energy accounting (``accounting:``, docs/energy.md),
which makes consumption per hour (``import_kwh_hour``, ...) a point of every meter:
``with_accounting: {...}`` replaces the keys it names when the site has accounting on (as a
site override would), and ``needs_accounting: true`` leaves the rule out when it has not.
The pack can thus judge hourly consumption where it exists and instantaneous power elsewhere.

A rule override replaces the keys it names, whole (a ``when`` is never merged with the
pack's: a half-merged condition tree would be a guess), except ``message``, which is merged
per language; ``$name`` works in overrides too; the id cannot change; ``devices`` in an
override replaces the pack's ``kind`` and the other way round.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from gateway.config._yaml import YamlProblem, parse_yaml, read_limited

__all__ = ["bundled_detector_dirs", "expand_detectors"]

#: A pack name: what an id may be (a file name, never a path).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_PARAM = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_PACK_KEYS = {"name", "description", "kind", "params", "rules", "source"}
_USE_KEYS = {"use", "as", "kind", "devices", "params", "rules"}

class Problem(Protocol):
    """Records one mistake: key path, what is wrong and expected, what was found."""

    def __call__(self, path: str, message: str, found: str | None = None) -> None: ...


def bundled_detector_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / "detectors",
                  here.parents[1] / "_bundled_config" / "detectors"]
    return [c for c in candidates if c.is_dir()]


def expand_detectors(data: dict[str, Any], base_dir: Path, problem: Problem,
                     origins: dict[str, str] | None = None) -> None:
    """Replace ``data["detectors"]`` by the rules it stands for (appended to ``rules``).

    ``origins`` (if given) receives, for each rule added, its key path (``rules[12]``) and
    where it comes from (``detectors[0], pack elevator, rule offline``), so that a mistake
    in it can be reported where the user can fix it.
    """
    entries = data.pop("detectors", None)
    if entries is None:
        return
    if not isinstance(entries, list):
        problem("detectors", "expected a list of detector pack names or {use: NAME, ...}")
        return
    rules = data.setdefault("rules", [])
    if not isinstance(rules, list):
        return
    devices = data.get("devices")
    kinds = {d.get("kind") for d in devices if isinstance(d, dict)
             and isinstance(d.get("kind"), str)} if isinstance(devices, list) else set()
    prefixes: dict[str, str] = {}
    accounting = _accounting_on(data.get("accounting"))
    for i, entry in enumerate(entries):
        path = f"detectors[{i}]"
        use = entry if isinstance(entry, str) else entry.get("use") \
            if isinstance(entry, dict) else None
        if not isinstance(use, str) or not _NAME.fullmatch(use):
            problem(path, "expected a pack name (letters, digits, '_', '-', '.'; at most 64 "
                          "characters) or a mapping with 'use: NAME'",
                    found=_shown(entry if use is None else use))
            continue
        options: dict[str, Any] = entry if isinstance(entry, dict) else {}
        if not _options_ok(options, path, problem):
            continue
        prefix = options.get("as", use)
        if prefix in prefixes:
            problem(path, f"pack {use!r} is already used by {prefixes[prefix]}: their rules "
                          f"would have the same ids ({prefix}.<rule>). Give this entry a name "
                          f"of its own with 'as: NAME' (its rules become NAME.<rule>), or "
                          f"make it one entry")
            continue
        prefixes[prefix] = path
        pack = _load_pack(use, base_dir, path, problem)
        if pack is not None:
            # A pack covers a whole facility system; its rules for kinds this site does not
            # have (no water meters, say) are left out rather than reported as errors.
            for rule in _expand(pack, use, options, prefix=prefix, path=path, problem=problem,
                                accounting=accounting):
                if "devices" in rule or _text(rule.get("kind")) in kinds:
                    if origins is not None:
                        origins[f"rules[{len(rules)}]"] = (
                            f"{path}, pack {use}, rule {rule['id'].partition('.')[2]}")
                    rules.append(rule)


def _options_ok(options: dict[str, Any], path: str, problem: Problem) -> bool:
    """Check the shape of a ``{use: ..., params: ..., rules: ...}`` entry before using it."""
    unknown = set(options) - _USE_KEYS
    if unknown:
        problem(path, f"unknown key(s) {_names(unknown)}; expected {_names(_USE_KEYS)}")
        return False
    ok = True
    name = options.get("as")
    if name is not None and (not isinstance(name, str) or not _NAME.fullmatch(name)):
        problem(f"{path}.as", "expected a name for this use of the pack (letters, digits, "
                              "'_', '-', '.'; at most 64 characters)", found=_shown(name))
        ok = False
    params = options.get("params")
    if params is not None and not isinstance(params, dict):
        problem(f"{path}.params", "expected a mapping of parameter: value",
                found=_shown(params))
        ok = False
    switches = options.get("rules")
    if switches is not None and not isinstance(switches, dict):
        problem(f"{path}.rules", "expected a mapping of rule id: false or {overrides}",
                found=_shown(switches))
        ok = False
    elif isinstance(switches, dict):
        for rule_id, switch in switches.items():
            if not isinstance(switch, bool | dict):
                problem(f"{path}.rules.{rule_id}", "expected false, true or a mapping of "
                                                   "overrides", found=_shown(switch))
                ok = False
            elif isinstance(switch, dict) and "id" in switch:
                problem(f"{path}.rules.{rule_id}.id", "a pack rule's id cannot be changed; "
                        "switch the rule off (false) and write your own under 'rules:'")
                ok = False
    return ok


def _load_pack(name: str, base_dir: Path, path: str, problem: Problem) -> dict[str, Any] | None:
    dirs = [base_dir / "detectors", *bundled_detector_dirs()]
    file = next((d / f"{name}.yaml" for d in dirs if (d / f"{name}.yaml").is_file()), None)
    if file is None:
        known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
        problem(path, f"detector pack {name!r} not found (known: {', '.join(known) or 'none'})")
        return None
    try:
        pack, _ = parse_yaml(read_limited(file))
    except YamlProblem as exc:
        where = f"{exc.path} (line {exc.line})" if exc.path else f"line {exc.line}"
        found = f" (found: {exc.found})" if exc.found else ""
        problem(path, f"detector pack {file}: {where}: {exc.message}{found}")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problem(path, f"detector pack {file} cannot be read: {exc}")
        return None
    if not isinstance(pack, dict) or not isinstance(pack.get("rules"), list) \
            or set(pack) - _PACK_KEYS or not isinstance(pack.get("params") or {}, dict):
        problem(path, f"detector pack {file} must be a mapping with a 'rules' list, an optional "
                      f"'params' mapping and only {_names(_PACK_KEYS)}")
        return None
    return pack


def _expand(pack: dict[str, Any], name: str, options: dict[str, Any], *, prefix: str,
            path: str, problem: Problem, accounting: bool) -> list[dict[str, Any]]:
    params = dict(pack.get("params") or {})
    overrides: dict[Any, Any] = options.get("params") or {}
    unknown = set(overrides) - set(params)
    if unknown:
        problem(f"{path}.params", f"unknown parameter(s) {_names(unknown)}; "
                                  f"{name} has {_names(params) or 'none'}")
    params.update({k: v for k, v in overrides.items() if k in params})
    switches: dict[Any, Any] = options.get("rules") or {}
    pack_ids = [_text(r.get("id")) for r in pack["rules"] if isinstance(r, dict)]
    for rule_id in set(switches) - set(pack_ids):
        problem(f"{path}.rules", f"{name} has no rule {rule_id!r} (rules: "
                                 f"{', '.join(str(r) for r in pack_ids)})")
    out = []
    for raw in pack["rules"]:
        if not isinstance(raw, dict):
            continue
        switch = switches.get(_text(raw.get("id")), True)
        if switch is False:
            continue
        rule = _substitute(raw, params)
        with_accounting = rule.pop("with_accounting", None)
        if rule.pop("needs_accounting", False) is True and not accounting:
            continue
        if accounting and isinstance(with_accounting, dict):
            _override(rule, with_accounting)
        rule["id"] = f"{prefix}.{rule.get('id')}"
        if "devices" in options:
            rule.pop("kind", None)
            rule["devices"] = options["devices"]
        elif "kind" in options and "kind" not in raw:
            rule["kind"] = options["kind"]
        else:
            rule.setdefault("kind", pack.get("kind"))
        if isinstance(switch, dict):
            _override(rule, _substitute(switch, params))
        out.append(rule)
    return out


def _accounting_on(section: Any) -> bool:
    """Whether the raw ``accounting:`` value turns accounting on: a mapping (``{}`` too)
    without ``enabled: false``; no section, or null, is off."""
    return isinstance(section, dict) and section.get("enabled", True) is not False


def _override(rule: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply a site's changes to one pack rule (see the module docstring)."""
    for key, value in changes.items():
        if key == "message" and isinstance(value, dict) and isinstance(rule.get(key), dict):
            rule[key] = {**rule[key], **value}
            continue
        if key == "devices":
            rule.pop("kind", None)
        elif key == "kind":
            rule.pop("devices", None)
        rule[key] = value


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, str) and (m := _PARAM.match(value)) and m.group(1) in params:
        return params[m.group(1)]
    return value


def _text(value: Any) -> str | None:
    """``value`` if it is text; ``None`` for anything else (validation reports it)."""
    return value if isinstance(value, str) else None


def _names(keys: Any) -> str:
    """Keys for a message, sorted as text (YAML keys may be numbers, dates, null...)."""
    return ", ".join(sorted(str(k) for k in keys))


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."
