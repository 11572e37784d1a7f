"""systemd/propgw.service: the settings operators rely on are there, and systemd accepts the
file (``systemd-analyze verify`` prints parse problems but still exits 0, so its output must
be empty)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "propgw.service"


def _settings() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def test_state_is_private_files_are_budgeted_and_usb_acm_adapters_allowed() -> None:
    settings = _settings()
    assert ("UMask", "0077") in settings
    assert ("LimitNOFILE", "8192") in settings
    devices = {value for key, value in settings if key == "DeviceAllow"}
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw", "char-ttyS rw",
            "char-ttySC rw"} <= devices
    assert ("DevicePolicy", "closed") in settings


def test_reload_sends_sighup_which_the_gateway_answers_with_a_config_reload() -> None:
    assert ("ExecReload", "/bin/kill -HUP $MAINPID") in _settings()
    assert ("Type", "notify") in _settings(), "RELOADING=1 / READY=1 frame the reload"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The unit names the installed path; verify also checks that the command exists.
    propgw = Path(sys.executable).with_name("propgw")
    assert propgw.exists(), "scripts/setup.sh installs the propgw console script"
    unit = tmp_path / "propgw.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/propgw/current/bin/propgw",
                                                             str(propgw)), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout and not result.stderr, (
        result.stdout + result.stderr)
