"""docs/packs.md is generated from the detector packs and device profiles by
scripts/pack_docs.py and must not drift from them: the committed page equals what the script
writes, and it lists every pack, rule, parameter and point with its value codes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pack_docs.py"
PAGE = REPO / "docs" / "packs.md"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_committed_page_is_what_the_packs_and_profiles_say() -> None:
    result = _script("--check")
    assert result.returncode == 0, (result.stderr + " — run: .venv/bin/python "
                                    "scripts/pack_docs.py and commit docs/packs.md")


def test_every_pack_rule_parameter_and_point_is_listed() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for path in sorted((REPO / "config" / "detectors").glob("*.yaml")):
        pack = _yaml(path)
        assert f"## Pack `{pack['name']}`" in page
        for rule in pack["rules"]:
            assert f"- **`{rule['id']}`** — {rule['priority']}" in page
        for param, default in (pack.get("params") or {}).items():
            assert f"| `{param}` | `{default}` |" in page
    for path in sorted((REPO / "config" / "profiles").glob("*.yaml")):
        profile = _yaml(path)
        section = page.split(f"### Profile `{profile['name']}`", 1)[1].split("\n#", 1)[0]
        for point in profile["points"]:
            row = next((line for line in section.splitlines()
                        if line.startswith(f"| `{point['name']}` |")), None)
            assert row is not None, f"{profile['name']}: point {point['name']} not listed"
            if point.get("description"):
                assert point["description"].replace("|", "\\|") in row


def test_value_codes_are_explained_where_the_rules_use_them() -> None:
    page = PAGE.read_text(encoding="utf-8")
    trapped = next(line for line in page.splitlines() if "`trapped-between-floors`" in line)
    when = page.split(trapped, 1)[1].splitlines()[1]
    assert when.startswith("  - When: `car_status` = `0` (stopped) and `door_zone` = `2` "
                           "(outside) and `door_status` = `1` (closed)")
    assert "`service_mode` not in {`0` (out of service), `2` (inspection)" in when
    assert "for `$trapped_between_floors_delay`" in when
    row = next(line for line in page.splitlines() if line.startswith("| `service_mode` |"))
    assert "holding 6 (0x0006)" in row and "7 unknown" in row
    assert "`trapped-between-floors`" in row


def test_a_changed_pack_or_profile_makes_the_check_fail_and_shows_up(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    profile = config / "profiles" / "elevator-modbus.yaml"
    profile.write_text(profile.read_text(encoding="utf-8") + (
        '  - {name: door_hold_request, address: 45, function: holding, type: uint16, '
        'description: "0 none, 1 requested"}\n'), encoding="utf-8")
    pack = config / "detectors" / "elevator.yaml"
    pack.write_text(pack.read_text(encoding="utf-8") + (
        "\n  - id: door-request-unserved\n    category: elevator_entrapment\n    priority: P0\n"
        "    for: 20s\n    when: {point: door_hold_request, eq: 1, while_new: {point: x}}\n"
        "    message: {zh: 门, en: door}\n"), encoding="utf-8")
    page = tmp_path / "packs.md"
    shutil.copy(PAGE, page)
    stale = _script("--check", "--config", str(config), "--output", str(page))
    assert stale.returncode == 1
    assert "out of date: run scripts/pack_docs.py" in stale.stderr
    assert _script("--config", str(config), "--output", str(page)).returncode == 0
    text = page.read_text(encoding="utf-8")
    assert re.search(r"^\| `door_hold_request` \| holding 45 \(0x002D\) \| uint16 \|  \| "
                     r"0 none, 1 requested \| `door-request-unserved` \|$", text, re.MULTILINE)
    # A condition form the script does not know is shown as written, never dropped.
    assert "When: `{point: door_hold_request, eq: 1, while_new: {point: x}}`, for `20s`" in text
    assert _script("--check", "--config", str(config), "--output", str(page)).returncode == 0
