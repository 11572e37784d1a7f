"""Hostile config files end as exit status 2 with one line per problem, quickly, in bounded
memory: one regression test per crash class a fuzz run found (tracebacks, hangs), through the
real ``propgw check-config`` in a subprocess, and the same files through ``load_config``.

Before the fix, on the same files: RecursionError, ValueError (int max-str-digits), TypeError,
OSError (file name too long) tracebacks, and a hang with memory growing past 1 GiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_CHARS,
    MAX_NODES,
    MAX_SCALAR_CHARS,
    ModbusTcpDevice,
    load_config,
    load_config_text,
    parse_yaml,
)
from gateway.errors import ConfigError
from tests.hostile_configs import check_one, main

SITE = "site: {id: s1, name: n, gateway_id: g1}\n"
#: Generous for a loaded CI machine; each file takes ~0.5 s here, interpreter start included.
WALL_BOUND = 5.0
#: Peak resident memory of one check; a plain check-config uses ~65 MiB.
MEMORY_BOUND_MIB = 200


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


#: (name, file text, the problem line expected after "  - ").
CASES: list[tuple[str, str, str]] = [
    ("alias bomb", billion_laughs(),
     f"a4[7] (line 5): too many values: the limit is {MAX_NODES} values (scalars, lists, "
     f"mappings) with every alias expanded (alias *a3 adds 11111); an alias bomb? "
     f"(found: more than {MAX_NODES})"),
    ("recursive alias", "a: &a [*a]\n",
     "a[0] (line 1): recursive alias: *a is used inside the node &a it refers to"),
    ("recursive merge", "a: &a\n  b: 1\n  <<: *a\n",
     "a.<< (line 3): recursive alias: *a is used inside the node &a it refers to"),
    ("5,000 nested [", "a: " + "[" * 5000 + "]" * 5000 + "\n",
     f"line 1, column 1003: nested too deeply: the nesting limit is {MAX_DEPTH} levels of "
     f"lists and mappings (found: more than 1000 levels)"),
    ("3,000-level block nesting", "- " * 3000 + "x\n",
     f"nested too deeply: the nesting limit is {MAX_DEPTH} levels of lists and mappings "
     f"(found: more than {MAX_DEPTH} levels)"),
    ("5,000-digit integer", SITE + "state_dir: " + "9" * 5000 + "\n",
     f"state_dir (line 2): integer too long: the integer length limit is {MAX_INT_CHARS} "
     f"characters (found: 5000 characters)"),
    ("detector params: 5", SITE + "detectors:\n  - use: energy\n    params: 5\n",
     "detectors[0].params (line 4): expected a mapping of parameter: value (found: 5)"),
    ("300-character profile name",
     SITE + "devices:\n  - {id: d, driver: modbus-tcp, host: h, profile: " + "p" * 300 + "}\n",
     "devices[0].profile (line 3): expected a profile name (letters, digits, '_', '-', '.'; "
     "at most 64 characters) or the path of a .yaml file (found: 'ppppppppp"),
    # Found afterwards by the fuzzer (tests/test_config_fuzz.py):
    ("file over 1 MiB", "# " + "x" * MAX_FILE_BYTES + "\n",
     f"(top level): file too large: the file size limit is {MAX_FILE_BYTES} bytes (1 MiB) "
     f"(found: more than {MAX_FILE_BYTES} bytes)"),
    ("20,000-character value", SITE + "state_dir: " + "x" * 20_000 + "\n",
     f"state_dir (line 2): value too long: the value length limit is {MAX_SCALAR_CHARS} "
     f"characters (found: 20000 characters)"),
    ("tag that does not fit", SITE + "state_dir: !!int abc\n",
     "line 2, column 12: YAML value: 'abc' is not a valid !!int"),
    ("empty !!float", SITE + 'state_dir: !!float ""\n',
     "line 2, column 12: YAML value: '' is not a valid !!float"),
    ("impossible date", SITE + "state_dir: 2023-02-30\n",
     "line 2, column 12: YAML value: '2023-02-30' is not a valid !!timestamp "
     "(day is out of range for month)"),
    ("NUL byte", SITE + "state_dir: a\x00b\n",
     "line 2, column 13: YAML syntax: character #x0000: control characters are not allowed"),
    ("terminal escape in a key", SITE + '"\\x1b[2J\\nx": 1\n',
     "\\x1b[2J\\nx (line 2): unknown key '\\x1b[2J\\nx'. Expected one of:"),
    ("infinite threshold", SITE + "devices:\n  - {id: d, driver: mqtt, stale_after: .inf, "
                                  "points: [{name: p, topic: t}]}\n"
                                  "brokers: {b: {host: h}}\n",
     "devices[0].stale_after (line 3): input should be a finite number (found: inf)"),
]
IDS = [name for name, _, _ in CASES]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=IDS)
def test_check_config_exits_2_with_one_line_per_problem(tmp_path: Path, name: str, text: str,
                                                        expected: str) -> None:
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    outcome = check_one(tmp_path, timeout=30)
    assert outcome.code == 2, (name, outcome)
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert lines[0] == f"{tmp_path / 'site.yaml'}: 1 problem", outcome.stderr
    assert lines[1].startswith("  - ") and expected in lines[1], outcome.stderr
    assert outcome.seconds < WALL_BOUND, outcome.seconds
    assert outcome.peak_mib < MEMORY_BOUND_MIB, outcome.peak_mib


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=IDS)
def test_load_config_reports_the_same_problem_in_milliseconds(
        tmp_path: Path, name: str, text: str, expected: str) -> None:
    file = tmp_path / "site.yaml"
    file.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert time.monotonic() - started < 1.0
    assert len(info.value.problems) == 1
    assert expected in str(info.value.problems[0])


def test_a_device_file_or_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # no writer: open() would block for ever
    for path in ("/dev/zero", str(fifo)):
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert "is not a regular file" in str(info.value.problems[0])
        assert time.monotonic() - started < 1.0


def test_a_hostile_profile_file_is_held_to_the_same_limits(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(billion_laughs().replace("a9:", "points:"))
    (tmp_path / "site.yaml").write_text(
        SITE + "devices:\n  - {id: d, driver: modbus-tcp, host: h, profile: bomb.yaml}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "site.yaml", env={})
    problem = str(info.value.problems[0])
    assert problem.startswith("devices[0].profile (line 3): profile ")
    assert "bomb.yaml: a4[7] (line 5): too many values" in problem


def test_a_hostile_detector_pack_is_held_to_the_same_limits(tmp_path: Path) -> None:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "deep.yaml").write_text("rules: " + "[" * 200 + "]" * 200)
    (tmp_path / "site.yaml").write_text(SITE + "detectors: [deep]\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "site.yaml", env={})
    assert "deep.yaml: rules" in str(info.value.problems[0])
    assert "nested too deeply" in str(info.value.problems[0])


def test_the_limits_leave_real_configs_alone() -> None:
    # Every shipped config, profile and pack parses within the limits, far from each of them.
    repo = Path(__file__).resolve().parents[1] / "config"
    for file in sorted(repo.rglob("*.yaml")):
        text = file.read_text(encoding="utf-8")
        assert len(text.encode()) < MAX_FILE_BYTES // 20, file
        data, node = parse_yaml(text)
        assert data is not None and node is not None, file


def test_aliases_within_the_limit_still_work() -> None:
    config = load_config_text(
        SITE + "devices:\n"
               "  - &lift {id: E1, driver: modbus-tcp, host: h, poll_interval: 500ms,\n"
               "           points: [{name: v, address: 0}]}\n"
               "  - {<<: *lift, id: E2}\n", env={})
    e1, e2 = config.devices
    assert isinstance(e1, ModbusTcpDevice) and isinstance(e2, ModbusTcpDevice)
    assert [(d.id, d.poll_interval) for d in (e1, e2)] == [("E1", 0.5), ("E2", 0.5)]


def test_the_hostile_file_run_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    # The same run scripts/fuzz.sh does with 600 files, with a few.
    assert main(["--count", "6", "--seed", "8"]) == 0
    out = capsys.readouterr().out
    rows = dict(line.strip().split("  ", 1) for line in out.splitlines()[1:]
                if line.startswith("  ") and not line.startswith("  !"))
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["files"] == "6"
    assert int(rows["exit 2"]) + int(rows["exit 0 (still valid)"]) == 6
    assert (rows["other exit codes"], rows["tracebacks"], rows["hangs (timeout)"]) == \
        ("0", "0", "0")


def test_the_summary_shows_control_characters_escaped(tmp_path: Path) -> None:
    file = tmp_path / "site.yaml"
    file.write_text('site: {id: s1, name: "阳光\\x1b[2J\\u2028x", gateway_id: g1}\n')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(file)],
                            capture_output=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr
    summary = result.stdout
    assert b"\x1b" not in summary and "\u2028".encode() not in summary
    assert "site s1 (阳光\\x1b[2J\\u2028x), gateway g1" in summary.decode()


def test_an_environment_number_too_long_for_python_is_a_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("site: {id: s1, name: n, gateway_id: g1}\n"
                         "brokers: {b: {host: h, port: '${PORT}'}}\n", env={"PORT": "9" * 5000})
    assert [str(p) for p in info.value.problems] == [
        "brokers.b.port (line 2): unable to parse input string as an integer, exceeded maximum "
        "size (found: ${PORT})"]
