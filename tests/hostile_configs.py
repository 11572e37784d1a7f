"""Hostile config files, and a run of ``propgw check-config`` over many of them.

The building blocks (snippets of hostile YAML, hostile values, mutations of the shipped example
configs) are shared by the hypothesis tests in ``test_config_fuzz.py`` and by the file run
below, which writes ``--count`` files (default 600) from a fixed seed, runs the real CLI on each
in a subprocess with a timeout, and prints one table::

    .venv/bin/python -m tests.hostile_configs --count 600

Every file must end with exit status 2 (or 0 when a mutation happened to leave the file
valid), no traceback on stderr, and within the timeout. The exit status is 1 if any did not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "config" / "examples"
#: Environment for the examples' ${...} references.
ENV = {"PLATFORM_MQTT_PASSWORD": "x", "MQTT_PASSWORD": "x", "LOCAL_MQTT_PASSWORD": "x"}

#: The shipped examples as text, and parsed (the starting points for mutations).
BASE_TEXTS: dict[str, str] = {p.name: p.read_text(encoding="utf-8")
                              for p in sorted(EXAMPLES.glob("*.yaml"))}
BASE_DATA: dict[str, Any] = {name: yaml.safe_load(text) for name, text in BASE_TEXTS.items()}


def _keys(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(str(key))
            _keys(value, out)
    elif isinstance(node, list):
        for item in node:
            _keys(item, out)
    return out


#: Every key the examples use: mutations put values under real keys, not only random ones.
REAL_KEYS: list[str] = sorted(_keys(BASE_DATA, set()))


# --------------------------------------------------------------------------- hostile snippets
# Each is one line of YAML usable as a value in block or flow context.


def big_int(rng: random.Random) -> str:
    digits = rng.choice([65, 100, 4299, 4301, 5000, 20_000])
    form = rng.choice(["dec", "neg", "hex", "oct", "bin", "under", "sexagesimal", "tagged"])
    if form == "hex":
        return "0x" + "f" * digits
    if form == "oct":
        return "0o" + "7" * digits
    if form == "bin":
        return "0b" + "1" * digits
    if form == "under":
        return "1_" * (digits // 2) + "1"
    if form == "sexagesimal":
        return "1" + ":59" * (digits // 3)
    if form == "tagged":
        return f'!!int "{"9" * digits}"'
    return ("-" if form == "neg" else "") + "9" * digits


def long_text(rng: random.Random) -> str:
    n = rng.choice([10_001, 30_000, 200_000])
    char = rng.choice(["x", "é", "梯", "\\x1b", "\\n"])
    return f'"{char * n}"' if rng.random() < 0.5 else "y" * n


def odd_scalar(rng: random.Random) -> str:
    return rng.choice([
        ".nan", ".inf", "-.inf", "1e400", "-1e400", "1e-400", "0x", "!!int abc", "!!float x",
        "!!bool maybe", "!!timestamp nope", "2023-02-30", "2023-13-45 25:61:61", "0000-01-01",
        "!!binary ä", "!!binary AAAA", "!!set {a, b}", "!!omap [a: 1, b: 2]", "!!pairs [a: 1]",
        "!!python/object:os.system [ls]", "!!python/name:os.system", "!foo bar", "!!str [1]",
        "!!null x", '"\\0"', '"\\x1b[2J\\x07"', '"a\\nb\\rc"', '"\\u202e"', '"\\U0010FFFF"',
        "~", "null", "''", '""', "[]", "{}", "-1", "0", "1.5", "-0.0", "true", "yes", "on",
        "${NOPE}", "${A:-${B}}", '"${PLATFORM_MQTT_PASSWORD}"', "${}", "$${X}", "2m", "-5s",
        "999999999999999999999999d", "1e308s", "? a", "*undefined", "&dup x",
        '"' + "\\ud800" + '"', "!!merge x", "<<", "[*undefined]", "{<<: 1}", "[1, [2, [3]]]",
    ])


def alias_bomb(rng: random.Random) -> str:
    """A classic billion-laughs document (sequence, mapping or merge flavour)."""
    width = rng.randint(3, 12)
    depth = rng.randint(6, 12)
    flavour = rng.choice(["seq", "map", "merge", "block"])
    lines = ['a0: &a0 "lol"']
    for i in range(1, depth):
        refs = [f"*a{i - 1}"] * width
        if flavour == "seq":
            lines.append(f"a{i}: &a{i} [{', '.join(refs)}]")
        elif flavour == "map":
            lines.append(f"a{i}: &a{i} {{{', '.join(f'k{j}: {r}' for j, r in enumerate(refs))}}}")
        elif flavour == "merge":
            body = ", ".join(f"k{j}: *a{i - 1}" for j in range(width))
            lines.append(f"a{i}: &a{i} {{<<: *a{i - 1}, {body}}}" if i > 1 else
                         f"a{i}: &a{i} {{{body}}}")
        else:
            lines.append(f"a{i}: &a{i}")
            lines.extend(f"  - *a{i - 1}" for _ in range(width))
    where = rng.choice(["top", "devices", "rules", "site"])
    body = "\n".join(lines)
    if where == "top":
        return body + "\n"
    last = f"*a{depth - 1}"
    return body + f"\n{where}: {last}\n"


def recursive_alias(rng: random.Random) -> str:
    return rng.choice([
        "a: &a [*a]\n",
        "a: &a {b: *a}\n",
        "a: &a\n  <<: *a\n",
        "a: &a\n  b:\n    - c: [1, *a]\n",
        "devices: &d\n  - id: x\n    points: *d\n",
        "a: &a {<<: [*a]}\n",
        "? &k [*k]\n: v\n",
        "a: &a [&b [*a]]\n",
        "site: &s {id: s, name: n, gateway_id: g, extra: {<<: *s}}\n",
    ])


def deep_nesting(rng: random.Random) -> str:
    depth = rng.choice([65, 100, 999, 1000, 1001, 3000, 5000, 50_000])
    style = rng.choice(["flow-seq", "flow-map", "flow-mixed", "block-seq", "block-map",
                        "block-seq-lines", "json"])
    if style == "flow-seq":
        return "a: " + "[" * depth + "]" * depth + "\n"
    if style == "flow-map":
        return "a: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if style == "flow-mixed":
        return "a: " + "[{a: " * (depth // 2) + "1" + "}]" * (depth // 2) + "\n"
    if style == "block-seq":
        return "- " * depth + "x\n"
    if style == "block-seq-lines":
        depth = min(depth, 1400)  # indentation grows quadratically; stay under the size cap
        return "".join(" " * i + "-\n" for i in range(depth)) + " " * depth + "x\n"
    if style == "block-map":
        depth = min(depth, 1400)
        return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v\n"
    return "[" * depth + "1" + "]" * depth + "\n"


def huge_file(rng: random.Random) -> bytes:
    size = rng.choice([1024 * 1024 + 1, 2 * 1024 * 1024, 8 * 1024 * 1024])
    shape = rng.choice(["comment", "list", "text", "keys"])
    if shape == "comment":
        return b"#" * size
    if shape == "list":
        return b"a: [" + b"0," * (size // 2) + b"0]\n"
    if shape == "text":
        return b"a: " + b"x" * size + b"\n"
    return b"".join(b"k%d: %d\n" % (i, i) for i in range(size // 8))


def garbage(rng: random.Random) -> bytes:
    kind = rng.choice(["random", "bad-utf8", "nul", "bom", "utf16", "control", "tabs", "cr"])
    if kind == "random":
        return rng.randbytes(rng.randint(1, 4096))
    if kind == "bad-utf8":
        return b"site: {id: \xff\xfe, name: n}\n"
    if kind == "nul":
        return b"site:\x00 {id: s}\n"
    if kind == "bom":
        return "\ufeff".encode() + BASE_TEXTS["two-elevators.yaml"].encode()
    if kind == "utf16":
        return BASE_TEXTS["two-elevators.yaml"].encode("utf-16")
    if kind == "control":
        return b"site: {id: s\x1b[2J, name: \x07}\n"
    if kind == "tabs":
        return b"site:\n\tid: s\n"
    return BASE_TEXTS["two-elevators.yaml"].replace("\n", "\r").encode()


def document_shape(rng: random.Random) -> str:
    return rng.choice([
        "", "# only a comment\n", "---\n", "---\n...\n", "42\n", "just text\n", "[1, 2]\n",
        "null\n", "- a\n- b\n", "a: 1\n---\nb: 2\n", "%YAML 1.1\n---\na: 1\n", "%YAML 9.9\n---\n",
        "%TAG ! tag:x,2000:\n--- !a\nb: 1\n", "!!map {a: 1}\n", "!!seq [a]\n", "? [a]\n: 1\n",
        "{[1]: 2}\n", "{? {a: 1}: 2}\n", "site: &x 1\nsite: *x\n",
    ])


# --------------------------------------------------------------------------- structural mutation


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in ``node`` (the root included as ``()``)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from paths_of(item, (*prefix, i))


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``data`` with the node at ``path`` replaced (the root replaced when ``path`` is empty)."""
    if not path:
        return value
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return data


def delete_at(data: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return data
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return data


class RawYaml:
    """Placeholders for YAML text that :func:`yaml.safe_dump` could not write itself."""

    def __init__(self) -> None:
        self.snippets: dict[str, str] = {}

    def __call__(self, snippet: str) -> str:
        token = f"RAWxSNIPPETx{len(self.snippets)}"
        self.snippets[token] = snippet
        return token

    def dump(self, data: Any) -> str:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10_000)
        for token, snippet in self.snippets.items():
            text = text.replace(token, snippet)
        return text


def random_value(rng: random.Random, raw: RawYaml, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.15:
        return raw(big_int(rng))
    if roll < 0.3:
        return raw(odd_scalar(rng))
    if roll < 0.35:
        return raw(long_text(rng))
    if roll < 0.5 and depth < 3:
        return [random_value(rng, raw, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.65 and depth < 3:
        return {rng.choice([*REAL_KEYS, 1, None, "x" * 300, "a.b", "[0]", "é"]):
                random_value(rng, raw, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice([None, True, False, 0, -1, 2**31, 65536, 1.5, -0.0, "", "x", "é梯",
                       "x" * 300, "../../etc/passwd.yaml", "/dev/zero", "/dev/zero.yaml",
                       "elevator", "energy", "fire", "modbus-tcp", "mqtt", "coil", "P0",
                       "5m", "${NOPE}", "{a}", "a/b/#", "+", "#"])


def mutate(rng: random.Random, data: Any, raw: RawYaml) -> Any:
    """One structural change: replace, delete, add a key, wrap, or alias a node."""
    paths = list(paths_of(data))
    path = rng.choice(paths)
    op = rng.choice(["replace", "replace", "delete", "add-key", "wrap", "duplicate"])
    if op == "replace" or (op == "delete" and not path):
        return set_at(data, path, random_value(rng, raw))
    if op == "delete":
        return delete_at(data, path)
    target = data
    for step in path:
        target = target[step]
    if op == "add-key" and isinstance(target, dict):
        target[rng.choice([*REAL_KEYS, "extra", "x" * 300])] = random_value(rng, raw)
        return data
    if op == "wrap":
        return set_at(data, path, rng.choice([[target], {"x": target}]))
    if op == "duplicate" and isinstance(target, list) and target:
        target.extend(copy.deepcopy(target) * rng.randint(1, 3))
        return data
    return set_at(data, path, random_value(rng, raw))


def mutated_example(rng: random.Random) -> str:
    raw = RawYaml()
    data = copy.deepcopy(BASE_DATA[rng.choice(sorted(BASE_DATA))])
    for _ in range(rng.randint(1, 4)):
        data = mutate(rng, data, raw)
    return raw.dump(data)


def damaged_text(rng: random.Random) -> str:
    """Character-level damage to an example: what a bad copy-paste or a truncated write does."""
    text = BASE_TEXTS[rng.choice(sorted(BASE_TEXTS))]
    for _ in range(rng.randint(1, 5)):
        pos = rng.randrange(len(text) + 1)
        op = rng.choice(["insert", "delete", "truncate", "dup-line", "indent", "snippet"])
        if op == "insert":
            text = text[:pos] + rng.choice(["[", "{", "]", "}", ":", "-", "&a", "*a", "!",
                                            "'", '"', "\t", "\x00", "\x1b", "%", "@", "`",
                                            "|", ">", "#", "\n", "  ", "<<: "]) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + rng.randint(1, 40):]
        elif op == "truncate":
            text = text[:pos]
        elif op == "dup-line":
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                lines.insert(i, lines[i])
            text = "".join(lines)
        elif op == "indent":
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                lines[i] = " " * rng.randint(1, 5) + lines[i]
            text = "".join(lines)
        else:
            line_start = text.rfind("\n", 0, pos) + 1
            text = text[:line_start] + f"zz: {odd_scalar(rng)}\n" + text[line_start:]
    return text


# --------------------------------------------------------------------------- profiles and packs

SITE = "site: {id: s1, name: n, gateway_id: g1}\n"


def hostile_profile_name(rng: random.Random) -> str:
    return rng.choice([
        "x" * 300, "x" * 300 + ".yaml", "a/" * 3000 + "p.yaml", '"\\0p"', '"p\\0.yaml"',
        "../../../../etc/passwd", "/etc/passwd.yaml", "/dev/zero", "/dev/zero.yaml", "/",
        ".yaml", "profiles", "./", '"\\x1b[2J"', "~/p.yaml", "${HOME}/p.yaml", "[1, 2]",
        "{a: 1}", "42", "null", "true", "é" * 100, "-x", ".hidden", "p.yml", "dir.yaml",
    ])


def profile_case(rng: random.Random) -> dict[str, bytes]:
    """A device using a hostile profile name, or a profile file that is itself hostile."""
    driver = rng.choice(["mqtt", "modbus-tcp", "modbus-rtu"])
    if rng.random() < 0.5:
        name = hostile_profile_name(rng)
        files = {"site.yaml": (SITE + f"devices:\n  - {{id: d, driver: {driver}, host: h, "
                                      f"port: /dev/x, profile: {name}}}\n").encode()}
        files["dir.yaml/keep"] = b""
        return files
    body = rng.choice([
        alias_bomb(rng), recursive_alias(rng), deep_nesting(rng), f"points: {big_int(rng)}\n",
        f"points: [{{name: {long_text(rng)}}}]\n", "points: 5\n", "points: [1, [2], {a: 1}]\n",
        f"points:\n  - {{name: [x], address: {big_int(rng)}}}\n", "[]\n", "",
        f"driver: {odd_scalar(rng)}\npoints: []\n", "points: []\n1: 2\n", "points: []\nnull: x\n",
    ])
    data = body.encode() if rng.random() < 0.9 else rng.randbytes(200)
    return {"site.yaml": (SITE + f"devices:\n  - {{id: d, driver: {driver}, host: h, port: "
                                 f"/dev/x, broker: b, profile: bad.yaml}}\n").encode(),
            "bad.yaml": data}


def detector_case(rng: random.Random) -> dict[str, bytes]:
    """A ``detectors:`` entry of the wrong shape, or a local pack that is hostile."""
    def value() -> str:
        return rng.choice([big_int(rng), odd_scalar(rng), "5", "[1, 2]", "{1: 2}", "{null: 1}",
                           "[[1]]", "{a: {b: c}}", "x" * 300, "'[x]'"])

    entry = rng.choice([
        f"use: {value()}", f"use: energy\n    params: {value()}",
        f"use: energy\n    rules: {value()}", f"use: energy\n    rules: {{night-consumption: {value()}}}",
        f"use: energy\n    devices: {value()}", f"use: energy\n    kind: {value()}",
        f"use: energy\n    {value()}: 1", "use: bad", "use: ../../etc/passwd",
        f"use: {'x' * 300}",
    ])
    devices = rng.choice(["", "devices:\n  - {id: m, driver: modbus-tcp, host: h, "
                              "profile: eastron-sdm630, kind: [x]}\n"])
    files = {"site.yaml": (SITE + devices + f"detectors:\n  - {entry}\n").encode()}
    if "use: bad" in entry:
        files["detectors/bad.yaml"] = rng.choice([
            alias_bomb(rng), recursive_alias(rng), deep_nesting(rng), "rules: 5\n",
            "rules: [{id: [x]}]\nparams: 5\n", "rules: []\nparams: [1]\n",
            "rules: [{id: a, when: {point: x, eq: $p}}]\nparams: {p: 1, 2: 3}\n",
        ]).encode()
    return files


# --------------------------------------------------------------------------- the file run

#: (weight, family name, make) — make returns the files of one case; site.yaml is checked.
FAMILIES: list[tuple[int, str, Callable[[random.Random], dict[str, bytes]]]] = [
    (8, "alias bomb", lambda r: {"site.yaml": alias_bomb(r).encode()}),
    (4, "recursive alias", lambda r: {"site.yaml": recursive_alias(r).encode()}),
    (8, "deep nesting", lambda r: {"site.yaml": deep_nesting(r).encode()}),
    (6, "long integer", lambda r: {"site.yaml": (
        SITE + f"{r.choice(['state_dir', 'brokers', 'devices', 'log_level'])}: "
               f"{big_int(r)}\n").encode()}),
    (4, "long text", lambda r: {"site.yaml": (SITE + f"log_level: {long_text(r)}\n").encode()}),
    (6, "odd scalar or tag", lambda r: {"site.yaml": (SITE + f"state_dir: {odd_scalar(r)}\n")
                                        .encode()}),
    (4, "huge file", lambda r: {"site.yaml": huge_file(r)}),
    (6, "garbage bytes", lambda r: {"site.yaml": garbage(r)}),
    (4, "document shape", lambda r: {"site.yaml": document_shape(r).encode()}),
    (8, "profile", profile_case),
    (8, "detector", detector_case),
    (20, "mutated example", lambda r: {"site.yaml": mutated_example(r).encode()}),
    (14, "damaged example", lambda r: {"site.yaml": damaged_text(r).encode()}),
]


def generate(count: int, seed: int = 8) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``count`` cases, always the same ones for the same seed: (family, files)."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in FAMILIES]
    for _ in range(count):
        _, family, make = rng.choices(FAMILIES, weights)[0]
        yield family, make(rng)


@dataclass
class Tally:
    files: int = 0
    exit2: int = 0
    exit0: int = 0
    other: Counter[int] = field(default_factory=Counter)
    tracebacks: int = 0
    hangs: int = 0
    slowest: float = 0.0
    slowest_case: str = ""
    peak_mib: float = 0.0
    peak_case: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.other or self.tracebacks or self.hangs)


@dataclass(frozen=True)
class Outcome:
    """One check: exit status (``None``: killed at the timeout), traceback seen, seconds,
    peak memory (MiB) and the end of stderr."""

    code: int | None
    traceback: bool
    seconds: float
    peak_mib: float
    stderr: str


#: Imported by the checked interpreter at start-up (it is first on PYTHONPATH): writes the
#: process's peak resident memory at exit. VmHWM counts only the memory of the program after
#: exec; the child's rusage would also count the forking test process's pages.
_SITECUSTOMIZE = """\
import atexit, os

def _report_peak():
    with open("/proc/self/status") as status:
        peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PROPGW_PEAK_FILE"], "w") as out:
        out.write(peak_kib)

if os.environ.get("PROPGW_PEAK_FILE"):
    atexit.register(_report_peak)
"""


def check_one(case_dir: Path, timeout: float, product: Path = REPO) -> Outcome:
    """Run ``python -m gateway.cli check-config case_dir/site.yaml`` from the source tree
    ``product``, as a subprocess killed after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="propgw-check-") as tmp:
        hook, peak_file = Path(tmp) / "hook", Path(tmp) / "peak"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        env = {**os.environ, **ENV, "PYTHONPATH": f"{hook}{os.pathsep}{product}",
               "PROPGW_PEAK_FILE": str(peak_file)}
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "gateway.cli", "check-config",
                 str(case_dir / "site.yaml")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=product, env=env,
                timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            stderr = (exc.stderr or b"").decode("utf-8", "replace")
            return Outcome(None, "Traceback" in stderr, time.monotonic() - started, 0.0,
                           stderr[-400:])
        seconds = time.monotonic() - started
        peak_mib = int(peak_file.read_text()) / 1024 if peak_file.exists() else 0.0
    stderr = result.stderr.decode("utf-8", "replace")
    return Outcome(result.returncode, "Traceback" in stderr, seconds, peak_mib, stderr[-400:])


def run(count: int, *, seed: int = 8, timeout: float = 10.0, jobs: int | None = None,
        keep: Path | None = None, product: Path = REPO) -> Tally:
    """Write ``count`` hostile cases and check each with the real CLI, ``jobs`` at a time."""
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="propgw-hostile-") as tmp:
        root = keep or Path(tmp)
        cases: list[tuple[str, Path]] = []
        for i, (family, files) in enumerate(generate(count, seed)):
            case_dir = root / f"{i:04d}"
            for rel, data in files.items():
                (case_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (case_dir / rel).write_bytes(data)
            cases.append((family, case_dir))
        with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
            results = pool.map(lambda c: (c, check_one(c[1], timeout, product)), cases)
            for (family, case_dir), outcome in results:
                code, traceback = outcome.code, outcome.traceback
                tally.files += 1
                if outcome.seconds > tally.slowest:
                    tally.slowest, tally.slowest_case = outcome.seconds, case_dir.name
                if outcome.peak_mib > tally.peak_mib:
                    tally.peak_mib, tally.peak_case = outcome.peak_mib, case_dir.name
                if code is None:
                    tally.hangs += 1
                    tally.failures.append(f"{case_dir.name} ({family}): no answer in {timeout} s")
                    continue
                if traceback:
                    tally.tracebacks += 1
                if code == 2:
                    tally.exit2 += 1
                elif code == 0:
                    tally.exit0 += 1
                else:
                    tally.other[code] += 1
                if traceback or code not in (0, 2):
                    last = outcome.stderr.strip().splitlines()[-1:] or [""]
                    tally.failures.append(f"{case_dir.name} ({family}): exit {code}: {last[0]}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=600, help="files to generate (600)")
    parser.add_argument("--seed", type=int, default=8, help="generator seed (8)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds before a file counts as a hang (10)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel checks (CPU count)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the files here and keep them (default: a temp dir)")
    parser.add_argument("--product", type=Path, default=REPO,
                        help="propgw source tree whose check-config runs (default: this one; "
                             "e.g. a 'git archive' of another commit, to compare)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tally = run(args.count, seed=args.seed, timeout=args.timeout, jobs=args.jobs,
                keep=args.keep, product=args.product.resolve())
    other = sum(tally.other.values())
    other_detail = f"  ({', '.join(f'exit {c}: {n}' for c, n in sorted(tally.other.items()))})" \
        if other else ""
    print(f"propgw check-config ({args.product}) on {tally.files} hostile files "
          f"(seed {args.seed}, timeout {args.timeout:g} s)")
    for label, value in [("files", str(tally.files)), ("exit 2", str(tally.exit2)),
                         ("exit 0 (still valid)", str(tally.exit0)),
                         ("other exit codes", f"{other}{other_detail}"),
                         ("tracebacks", str(tally.tracebacks)),
                         ("hangs (timeout)", str(tally.hangs)),
                         ("slowest file", f"{tally.slowest:.2f} s (#{tally.slowest_case})"),
                         ("peak memory of one check",
                          f"{tally.peak_mib:.0f} MiB (#{tally.peak_case})"),
                         ("total time", f"{time.monotonic() - started:.1f} s")]:
        print(f"  {label:<26}{value}")
    for line in tally.failures[:20]:
        print(f"  ! {line}")
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
