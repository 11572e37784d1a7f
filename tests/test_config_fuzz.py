"""Fuzzing the config loader and ``propgw check-config`` with hypothesis.

The property, for any input: loading ends in a config or in a :class:`ConfigError` whose
problems are each one printable line; a config that loads can be summarised; nothing else
escapes, and each example takes well under the time bound. Inputs start from the shipped
example configs (structural mutations with hostile values, character-level damage), from
hostile YAML families (alias bombs, deep nesting, long numbers, odd tags) and from raw bytes.

The normal suite runs a fixed, derandomized set of examples (tests/fuzz_support.py says why);
``scripts/fuzz.sh`` runs many more with random seeds.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.cli import main, print_summary
from gateway.config import GatewayConfig, load_config_text
from gateway.errors import ConfigError
from tests import hostile_configs as hc
from tests.fuzz_support import budget

#: Per example; generous for CI, far below what a hang or an exponential blow-up takes.
TIME_BOUND = 5.0

# --------------------------------------------------------------------------- strategies

_INTERESTING_TEXT = ["", "x", "é梯", "P0", "P9", "5m", "-5s", "1e308s", "${NOPE}",
                     "${PLATFORM_MQTT_PASSWORD}", "{a}", "a/b/#", "+", "#", "elevator", "energy",
                     "modbus-tcp", "modbus-rtu", "mqtt", "coil", "holding", "float64", "bit",
                     "../../etc/passwd.yaml", "/dev/zero", "/dev/zero.yaml", "x" * 300,
                     "\x1b[2J", "a\nb", "\u2028", "\x00", "22:00", "25:61", "Asia/Nowhere",
                     "../etc", "C:\\x", "a" * 65, "local", "platform"]

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_INTERESTING_TEXT),
    st.text(max_size=20),
)
_numbers = st.one_of(st.floats(), st.integers(-(2**64), 2**64),
                     st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 1e-300, 1e300]))
_nudged: dict[type, st.SearchStrategy[Any]] = {
    bool: st.one_of(st.booleans(), st.none()), int: _numbers, float: _numbers,
    str: st.one_of(st.sampled_from(_INTERESTING_TEXT), st.text(max_size=20)),
}
_keys = st.one_of(st.sampled_from(hc.REAL_KEYS), st.sampled_from(["x", "a.b", "[0]", "x" * 300]),
                  st.integers(-3, 3), st.none(), st.booleans(), st.text(max_size=8))


def _raw_snippets() -> st.SearchStrategy[str]:
    rngs = st.randoms(use_true_random=False)
    return st.one_of(st.builds(hc.big_int, rngs), st.builds(hc.odd_scalar, rngs),
                     st.builds(hc.long_text, rngs))


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """An example config with 1-4 structural changes, dumped back to YAML."""
    raw = hc.RawYaml()
    leaves = st.one_of(_scalars, _raw_snippets().map(raw))
    values = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)), max_leaves=6)
    data: Any = copy.deepcopy(hc.BASE_DATA[draw(st.sampled_from(sorted(hc.BASE_DATA)))])
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(hc.paths_of(data))))
        op = draw(st.sampled_from(["nudge", "nudge", "replace", "delete", "add-key", "wrap",
                                   "duplicate"]))
        target = data
        for step in path:
            target = target[step]
        if op == "nudge" and isinstance(target, bool | int | float | str):
            # Same kind of value, so the file often stays valid and reaches deeper checks.
            data = hc.set_at(data, path, draw(_nudged[type(target)]))
        elif op == "delete" and path:
            data = hc.delete_at(data, path)
        elif op == "add-key" and isinstance(target, dict):
            target[draw(_keys)] = draw(values)
        elif op == "wrap":
            data = hc.set_at(data, path, [target] if draw(st.booleans()) else {"x": target})
        elif op == "duplicate" and isinstance(target, list) and target:
            target.extend(copy.deepcopy(target))
        else:
            data = hc.set_at(data, path, draw(values))
    return raw.dump(data)


_damaged = st.builds(hc.damaged_text, st.randoms(use_true_random=False))
_families = st.one_of(*(st.builds(f, st.randoms(use_true_random=False)) for f in (
    hc.alias_bomb, hc.recursive_alias, hc.deep_nesting, hc.document_shape)))


# --------------------------------------------------------------------------- the property


def check_text(text: str) -> None:
    """Load ``text`` as the examples' sibling; assert the property (module docstring)."""
    started = time.monotonic()
    problems: list[str] | None = None
    try:
        config = load_config_text(text, source="fuzz.yaml", base_dir=hc.EXAMPLES, env=hc.ENV)
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems]
    event("outcome: loaded" if problems is None else "outcome: ConfigError")
    if problems is None:
        assert_finite(config)
        print_summary(config, io.StringIO())
    else:
        assert problems, "a ConfigError must name at least one problem"
        for problem in problems:
            assert_one_printable_line(problem)
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BOUND, f"took {elapsed:.1f} s"


def assert_one_printable_line(line: str) -> None:
    assert line.isprintable(), f"problem is not one printable line: {line!r}"
    assert len(line) < 2000, f"problem line of {len(line)} characters"


def assert_finite(config: GatewayConfig) -> None:
    """A config that loads never holds NaN or infinity (a threshold, scale or duration)."""
    def walk(value: Any, path: str) -> None:
        if isinstance(value, float):
            assert math.isfinite(value), f"{path} is {value}"
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
    walk(config.model_dump(), "")


@budget(150)
@given(mutated_examples())
def test_mutated_examples_load_or_fail_cleanly(text: str) -> None:
    check_text(text)


@budget(100)
@given(_damaged)
def test_damaged_examples_load_or_fail_cleanly(text: str) -> None:
    check_text(text)


@budget(40)
@given(_families)
def test_hostile_yaml_families_fail_cleanly(text: str) -> None:
    check_text(text)


@budget(100)
@given(st.text(max_size=200))
def test_any_text_loads_or_fails_cleanly(text: str) -> None:
    check_text(text)


# --------------------------------------------------------------------------- the CLI, in process


def check_cli(case_dir: Path) -> None:
    """``propgw check-config case_dir/site.yaml`` in this process: exit 0 or 2, nothing else,
    output encodable as strict UTF-8 (a real stdout raises on anything else)."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    started = time.monotonic()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["check-config", str(case_dir / "site.yaml")])
        stdout.flush()
    assert code in (0, 2)
    if code == 2:
        stderr.seek(0)
        lines = stderr.read().splitlines()
        assert lines[0].endswith(("problem", "problems")), lines[0]
        for line in lines[1:]:
            assert line.startswith("  - "), line
            assert_one_printable_line(line)
    assert time.monotonic() - started < TIME_BOUND


_cases = st.randoms(use_true_random=False).map(
    lambda rng: rng.choices(hc.FAMILIES, [w for w, _, _ in hc.FAMILIES])[0][2](rng))


@pytest.fixture(scope="module")
def case_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cases")


_counter = iter(range(10**9))


def _write(root: Path, files: dict[str, bytes]) -> Path:
    case_dir = root / f"{next(_counter)}"
    for rel, data in files.items():
        (case_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (case_dir / rel).write_bytes(data)
    return case_dir


@budget(60)
@given(files=_cases)
def test_check_config_on_hostile_files(case_root: Path, files: dict[str, bytes]) -> None:
    check_cli(_write(case_root, files))


@budget(60)
@given(data=st.binary(max_size=2000))
def test_check_config_on_any_bytes(case_root: Path, data: bytes) -> None:
    check_cli(_write(case_root, {"site.yaml": data}))


def test_the_generated_cases_are_reproducible() -> None:
    first = [files for _, files in hc.generate(30, seed=3)]
    assert first == [files for _, files in hc.generate(30, seed=3)]
    assert first != [files for _, files in hc.generate(30, seed=4)]
    assert {family for family, _ in hc.generate(200)} == {f for _, f, _ in hc.FAMILIES}

