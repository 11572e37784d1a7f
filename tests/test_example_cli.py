"""``propgw example``: the shipped config files, printed or listed, from a checkout.

The same command in an installed release (files inside the package) is in test_install.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def propgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "example", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_without_a_name_it_lists_every_shipped_file_and_the_folder() -> None:
    shown = propgw()
    assert shown.returncode == 0, shown.stderr
    assert f"in {REPO / 'config'}:" in shown.stdout
    for folder in ("examples", "profiles", "detectors"):
        for path in (REPO / "config" / folder).glob("*.yaml"):
            assert path.stem in shown.stdout, path


def test_a_name_prints_that_file_exactly() -> None:
    for name, path in (("site", "examples/site.yaml"), ("elevator", "detectors/elevator.yaml"),
                       ("profiles/elevator-modbus", "profiles/elevator-modbus.yaml"),
                       ("two-elevators.yaml", "examples/two-elevators.yaml")):
        shown = propgw(name)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == (REPO / "config" / path).read_text(encoding="utf-8"), name


def test_an_unknown_name_is_one_line_listing_the_choices() -> None:
    shown = propgw("site2")
    assert shown.returncode == 2 and shown.stdout == ""
    (line,) = shown.stderr.splitlines()
    assert "no shipped file 'site2'" in line and "two-elevators" in line and "fire" in line


def test_path_prints_the_folder_or_the_files_place() -> None:
    assert propgw("--path").stdout.strip() == str(REPO / "config")
    assert propgw("--path", "fire").stdout.strip() == str(REPO / "config/detectors/fire.yaml")
