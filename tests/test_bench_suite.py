"""The performance suite (bench/suite.py) runs end to end in its smoke mode and writes every
figure of its table, with the machine and the versions, to the results file it is given.

Not a timing test: the numbers depend on the machine; what is checked is that each figure was
measured (a number, not "n/a") and that the file is appended to, never rewritten.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.timeout(240)]


def test_quick_suite_appends_every_figure(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nearlier text\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "bench/suite.py", "--quick", "--results",
                           str(results)], cwd=REPO, capture_output=True, text=True,
                          timeout=220, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results\n\nearlier text\n\n## Suite run ")
    assert "quick (smoke, not a result), 1 run(s)" in text
    assert re.search(r"- Machine: .+, \d+ cores, [\d.]+ GiB RAM, .+, kernel \S+", text)
    assert re.search(r"- Versions: Python 3\.\d+\.\d+, propgw [0-9a-f]{7,}.*, aiomqtt \S+, "
                     r"paho-mqtt \S+, pymodbus \S+, mosquitto \d", text)

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    figures = importlib.import_module("report").FIGURES
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")
            for line in text.splitlines() if line.startswith("| ")}
    for figure in figures:
        row = next((cells for name, cells in rows.items() if name.startswith(figure)), None)
        assert row is not None, f"no row for {figure!r}"
        assert re.match(r"[\d,.]", row[2]), f"{figure}: no propgw value in {row}"
    # The paho-only ceiling was measured in the same run, and the ratio computed.
    cpu = next(cells for name, cells in rows.items() if name.startswith(figures[0]))
    assert re.match(r"[\d.]+", cpu[3]) and re.match(r"[\d.]+", cpu[4]), cpu
    assert "- run 1, propgw: 1,000 → " in text
    assert "- run 1, paho-only: 1,000 → " in text
