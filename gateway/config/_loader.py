"""Load a site config file: YAML → ``${ENV}`` substitution → profiles → pydantic validation.

Every problem in the file is collected and raised together as one :class:`ConfigError` whose
lines name the file, the dotted key path (``devices[3].points[1].address``), the YAML line, what
was found and what was expected. Values that came from environment variables are shown as their
``${NAME}`` reference, never as the substituted text, so secrets do not reach a terminal or log.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config._conditions import CONDITION_TAGS, condition_model
from gateway.config._detectors import expand_detectors
from gateway.config._lint import lint
from gateway.config._models import GatewayConfig
from gateway.config._offline import OFFLINE_TAGS
from gateway.config._yaml import YamlProblem, parse_yaml, read_limited
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["bundled_profile_dirs", "load_config", "load_config_text"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: A profile or detector pack name: what an id may be (see ``Identifier``).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SECRET_KEYS = {"password", "token", "secret", "api_key"}
_UNION_TAGS = {"modbus-tcp", "modbus-rtu", "mqtt", *CONDITION_TAGS, *OFFLINE_TAGS}


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *,
                warnings: list[ConfigProblem] | None = None) -> GatewayConfig:
    """Read and validate a config file.

    Args:
        path: The YAML file.
        env: Variables for ``${NAME}`` references; default ``os.environ``.
        warnings: If given, receives what the file probably gets wrong without being
            invalid (see :mod:`gateway.config._lint`), located like errors.

    Raises:
        ConfigError: with every problem found in the file (and in the profiles it uses).
    """
    path = Path(path)
    try:
        text = read_limited(path)
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigProblem("", "file not found")]) from None
    except YamlProblem as exc:
        raise ConfigError(str(path), [_yaml_problem(exc)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read file: {exc}")]) from None
    return load_config_text(text, source=str(path), base_dir=path.parent, env=env,
                            warnings=warnings)


def load_config_text(text: str, *, source: str = "<config>", base_dir: Path | None = None,
                     env: Mapping[str, str] | None = None,
                     warnings: list[ConfigProblem] | None = None) -> GatewayConfig:
    """Like :func:`load_config`, from text already in memory (tests, ``propgw demo``)."""
    ctx = _Context(source=source, base_dir=base_dir or Path.cwd(),
                   env=os.environ if env is None else env)
    data = ctx.parse_yaml(text)
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "expected a mapping with site:, devices: "
                                                     "... at the top of the file",
                                                 found=type(data).__name__)])
    data = ctx.substitute_env(data, "")
    ctx.apply_profiles(data)
    expand_detectors(data, ctx.base_dir, ctx.problem, ctx.from_pack)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        ctx.add_validation_errors(exc, data)
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    if warnings is not None:
        for path, message in lint(config, ctx.address_texts):
            ctx.problem(path, message)
        warnings += ctx.problems
    return config


def bundled_profile_dirs() -> list[Path]:
    """Where the device profiles shipped with propgw live (repo checkout or installed wheel)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / "profiles", here.parents[1] / "_bundled_config"
                  / "profiles"]
    return [c for c in candidates if c.is_dir()]


@dataclass
class _Context:
    source: str
    base_dir: Path
    env: Mapping[str, str]
    problems: list[ConfigProblem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    from_env: dict[str, str] = field(default_factory=dict)
    from_profile: dict[str, str] = field(default_factory=dict)
    #: Rules made from detector packs (``rules[12]``) and where they come from.
    from_pack: dict[str, str] = field(default_factory=dict)
    #: Modbus addresses as written (``00017`` is not ``17``), by key path, for the warnings.
    address_texts: dict[str, str] = field(default_factory=dict)
    #: Lists with inherited profile items merged in front (``devices[0].points``): how many.
    inherited: dict[str, int] = field(default_factory=dict)

    def problem(self, path: str, message: str, found: str | None = None) -> None:
        origin = self.from_pack.get(re.sub(r"^(rules\[\d+\]).*", r"\1", path))
        if origin is not None:
            message += f" (in the rule from {origin})"
        line = self._line_of(path)
        path = self.shown_path(path)
        where = f"{path} (line {line})" if line is not None and path else path
        # Messages may quote what the file says, which may be 10,000 characters long.
        self.problems.append(ConfigProblem(_clip(where), _clip(message),
                                           None if found is None else _clip(found, 160)))

    # -- YAML

    def parse_yaml(self, text: str) -> Any:
        try:
            data, node = parse_yaml(text)
        except YamlProblem as exc:
            raise ConfigError(self.source, [_yaml_problem(exc)]) from None
        if node is not None:
            self._index_lines(node, "")
        return data

    def _index_lines(self, node: yaml.Node, path: str) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                self.lines[child] = key_node.start_mark.line + 1
                if key == "address" and isinstance(value_node, yaml.ScalarNode):
                    self.address_texts[child] = str(value_node.value)
                self._index_lines(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index_lines(item, f"{path}[{i}]")

    def _line_of(self, path: str) -> int | None:
        probe = path
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            shorter = re.sub(r"(\.[^.]*|\[\d+\])$", "", probe)
            if shorter == probe:  # e.g. "brokers.bad id.[key]": no parent we know of
                return None
            probe = shorter
        return None

    # -- environment

    def substitute_env(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute_env(v, _join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return self._expand(value, path)
        return value

    def _expand(self, text: str, path: str) -> str:
        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(path, f"environment variable {name} is not set "
                               f"(set it, or write ${{{name}:-default}})")
            return ""

        self.from_env[path] = text
        expanded = _ENV_REF.sub(repl, text)
        # A whole-value reference to a number stays a number: port: ${MQTT_PORT}
        # (Not beyond 64 digits: Python refuses to convert 4,300, and no setting needs 20.)
        if _ENV_REF.fullmatch(text) and re.fullmatch(r"-?\d{1,64}", expanded):
            return int(expanded)  # type: ignore[return-value]  # YAML would have typed it too
        return expanded

    # -- profiles

    def apply_profiles(self, data: dict[str, Any]) -> None:
        devices = data.get("devices")
        if not isinstance(devices, list):
            return
        cache: dict[str, dict[str, Any] | None] = {}
        for i, dev in enumerate(devices):
            if not isinstance(dev, dict) or not isinstance(dev.get("profile"), str):
                continue
            name = dev["profile"]
            if name not in cache:
                cache[name] = self._load_profile(name, f"devices[{i}].profile")
            profile = cache[name]
            if profile is not None:
                self._merge_profile(dev, profile, name, f"devices[{i}]")

    def _load_profile(self, name: str, path: str) -> dict[str, Any] | None:
        if not (_is_profile_path(name) or _NAME.fullmatch(name)):
            self.problem(path, "expected a profile name (letters, digits, '_', '-', '.'; at most "
                               "64 characters) or the path of a .yaml file", found=_short(name))
            return None
        try:
            file = self._find_profile(name)
        except (OSError, ValueError) as exc:  # e.g. a path component too long, a NUL byte
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem(path, f"profile path cannot be used: {reason}", found=_short(name))
            return None
        if file is None:
            dirs = [self.base_dir / "profiles", *bundled_profile_dirs()]
            known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
            self.problem(path, f"profile {name!r} not found (looked in "
                               f"{', '.join(str(d) for d in dirs)}; known: "
                               f"{', '.join(known) or 'none'})", found=name)
            return None
        try:
            profile, _ = parse_yaml(read_limited(file))
        except YamlProblem as exc:
            self.problem(path, f"profile {file}: {_yaml_problem(exc)}")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(path, f"profile {file} cannot be read: {exc}")
            return None
        allowed = {"name", "description", "kind", "driver", "points", "derived", "source"}
        if not isinstance(profile, dict) or not isinstance(profile.get("points"), list):
            self.problem(path, f"profile {file} must be a mapping with a 'points' list")
            return None
        if not isinstance(profile.get("derived", []), list):
            self.problem(path, f"profile {file}: 'derived' must be a list")
            return None
        unknown = set(profile) - allowed
        if unknown:
            self.problem(path, f"profile {file} has unknown key(s) "
                               f"{', '.join(sorted(map(str, unknown)))}"
                               f"; expected {', '.join(sorted(allowed))}")
            return None
        profile["_file"] = str(file)
        return profile

    def _find_profile(self, name: str) -> Path | None:
        if _is_profile_path(name):
            candidate = Path(name) if Path(name).is_absolute() else self.base_dir / name
            return candidate if candidate.is_file() else None
        for directory in [self.base_dir / "profiles", *bundled_profile_dirs()]:
            candidate = directory / f"{name}.yaml"
            if candidate.is_file():
                return candidate
        return None

    def _merge_profile(self, dev: dict[str, Any], profile: dict[str, Any], name: str,
                       path: str) -> None:
        family = profile.get("driver")
        driver = str(dev.get("driver", ""))
        if family is not None and not driver.startswith(str(family)):
            self.problem(f"{path}.profile", f"profile {name!r} is for {family} devices, but "
                                            f"this device has driver {driver!r}", found=name)
            return
        if "kind" in profile and "kind" not in dev:
            dev["kind"] = profile["kind"]
        # The device's own points and derived points replace the profile's of the same name,
        # either way: a derived service_mode replaces a profile's register of that name.
        own_names: set[str | None] = set()
        for key in ("points", "derived"):
            if isinstance(dev.get(key), list):
                own_names |= {_name_of(p) for p in dev[key]}
        own_names.discard(None)
        for key in ("points", "derived"):
            own = dev.get(key) or []
            if not isinstance(own, list):
                continue  # validation reports the device's own 'points' as not a list
            inherited = [dict(p) for p in profile.get(key, [])
                         if isinstance(p, dict) and _name_of(p) not in own_names]
            if not inherited and key not in dev:
                continue
            dev[key] = inherited + own
            for j in range(len(inherited)):
                self.from_profile[f"{path}.{key}[{j}]"] = profile["_file"]
            self._shift_points(f"{path}.{key}", len(inherited))

    def _shift_points(self, path: str, by: int) -> None:
        """The device's own points now come after ``by`` inherited ones: move what is known
        about them by key path (line numbers, address texts) along."""
        if not by:
            return
        own = re.compile(re.escape(path) + r"\[(\d+)\]")

        def shifted(key: str) -> str:
            match = own.match(key)
            if match is None:
                return key
            return f"{path}[{int(match.group(1)) + by}]{key[match.end():]}"

        self.lines = {shifted(k): v for k, v in self.lines.items()}
        self.address_texts = {shifted(k): v for k, v in self.address_texts.items()}
        self.inherited[path] = by

    def shown_path(self, path: str) -> str:
        """``path`` as the file has it: a device's own point is counted among the device's
        own, not after the profile's points merged in front of it (``points[1]``, not
        ``points[19]``)."""
        for prefix, by in self.inherited.items():
            match = re.match(re.escape(prefix) + r"\[(\d+)\]", path)
            if match is not None and int(match.group(1)) >= by:
                return f"{prefix}[{int(match.group(1)) - by}]{path[match.end():]}"
        return path

    # -- validation errors

    def add_validation_errors(self, exc: ValidationError, data: Any) -> None:
        for err in exc.errors(include_url=False):
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
            key_note = ""
            if len(loc) >= 2 and loc[-1] == "[key]":  # a bad mapping key, not a bad value
                key_note = f"key {loc[-2]!r}: "
                loc = loc[:-2]
            path = _path(loc)
            etype = err["type"]
            msg = err["msg"]
            if etype == "value_error" and not loc:
                for line in msg.removeprefix("Value error, ").splitlines():
                    sub_path, _, sub_msg = line.partition(": ")
                    self.problem(sub_path, sub_msg)
                continue
            found: str | None = None
            if etype == "extra_forbidden":
                key = str(loc[-1])
                path = _path(loc)
                msg = f"unknown key {key!r}{_suggest(key, _parent_fields(loc, data))}"
            elif etype == "missing":
                msg = "required key is missing"
            elif etype in ("too_long", "too_short"):
                # pydantic: "Dictionary should have at most 8 items after validation, not 9".
                ctx = err.get("ctx") or {}
                bound, limit = (("at most", ctx.get("max_length")) if etype == "too_long"
                                else ("at least", ctx.get("min_length")))
                value = err.get("input")
                got = len(value) if isinstance(value, dict | list) else ctx.get("actual_length")
                msg = f"{bound} {limit} {'entry' if limit == 1 else 'entries'}, got {got}"
            elif etype in ("union_tag_invalid", "union_tag_not_found"):
                ctx = err.get("ctx") or {}
                key = str(ctx.get("discriminator", "")).strip("'")
                expected = ctx.get("expected_tags", "")
                path = _join(path, key)
                if etype == "union_tag_invalid":
                    msg = f"expected one of {expected}"
                    found = repr(ctx.get("tag"))
                else:
                    msg = f"required key is missing (one of {expected})"
            else:
                msg = msg.removeprefix("Value error, ")
                msg = msg[0].lower() + msg[1:] if msg else msg
                value = err.get("input")
                # A check of a whole section says what is wrong in it; "found: dict" adds
                # nothing (a type error, "expected a list", keeps it).
                if not (etype == "value_error" and isinstance(value, dict | list)):
                    found = self._shown(path, value)
                if path.endswith(".address"):
                    msg += _six_digit_reference(err.get("input"))
            for prefix, profile_file in self.from_profile.items():
                if path == prefix or path.startswith(prefix + "."):
                    msg += f" (point from profile {profile_file})"
            self.problem(path, key_note + msg, found)

    def _shown(self, path: str, value: Any) -> str:
        if path in self.from_env:
            return self.from_env[path]
        last = path.rsplit(".", 1)[-1]
        if last in _SECRET_KEYS:
            return "***"
        text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        return text if len(text) <= 80 else text[:77] + "..."


def _yaml_problem(exc: YamlProblem) -> ConfigProblem:
    if exc.path and exc.line is not None:
        where = f"{exc.path} (line {exc.line})"
    elif exc.line is not None:
        where = f"line {exc.line}, column {exc.column}"
    else:
        where = exc.path
    return ConfigProblem(where, exc.message, exc.found)


def _six_digit_reference(value: Any) -> str:
    """A hint when a Modbus address too large to be one is a 6-digit Modicon reference
    (400001 = holding register 0, 300001 = input register 0)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return ""
    for prefix, table in ((400001, "holding"), (300001, "input")):
        if prefix <= value <= prefix + 65535:
            return (f"; {value} looks like a 6-digit Modicon reference for {table} register "
                    f"{value - prefix}: write `address: {value - prefix}, function: {table}`")
    return ""


def _is_profile_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name


def _name_of(point: Any) -> str | None:
    """A point's ``name`` if it is text (anything else is reported by validation)."""
    name = point.get("name") if isinstance(point, dict) else None
    return name if isinstance(name, str) else None


def _clip(text: str, limit: int = 600) -> str:
    """``text`` if short enough, else its start and end around ``...``."""
    return text if len(text) <= limit else f"{text[:limit - 120]}...{text[-117:]}"


def _short(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _parent_fields(loc: list[Any], data: Any) -> list[str]:
    """Field names allowed where an unknown key was found (best effort, for suggestions)."""
    model: type[BaseModel] | None = GatewayConfig
    annotation: Any = None
    node = data
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            model = _model_for(annotation, node)
            continue
        if model is None:
            return []
        info = model.model_fields.get(part)
        if info is None:
            info = next((f for f in model.model_fields.values() if f.alias == part), None)
        node = node.get(part) if isinstance(node, dict) else None
        annotation = info.annotation if info else None
        model = _model_for(annotation, node)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_for(annotation: Any, node: Any) -> type[BaseModel] | None:
    candidates: list[type[BaseModel]] = []

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            candidates.append(tp)
            return
        for arg in typing.get_args(tp):
            walk(arg)

    walk(annotation)
    if isinstance(node, dict):
        for cand in candidates:
            driver = cand.model_fields.get("driver")
            if driver is not None and node.get("driver") in typing.get_args(driver.annotation):
                return cand
        # A rule condition is the member its keys select, as when it is validated.
        if (picked := condition_model(node)) in candidates:
            return picked
        for cand in candidates:
            if set(node) & {f.alias or n for n, f in cand.model_fields.items()} == set(node):
                return cand
        # With a mistyped key, no member has every key: the one sharing the most is meant
        # ({comm_loss: true, foo: 1} is a comm-loss condition, not a point condition).
        def shared(cand: type[BaseModel]) -> int:
            return len(set(node) & {f.alias or n for n, f in cand.model_fields.items()})

        best = max(candidates, key=shared, default=None)
        if best is not None and shared(best):
            return best
    return candidates[0] if candidates else None


def _suggest(key: str, allowed: list[str]) -> str:
    if not allowed:
        return ""
    import difflib  # noqa: PLC0415 - for a mistake's hint only: a gateway that runs never loads it

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"{hint} Expected one of: {', '.join(sorted(allowed))}"
