"""``Reading``: a record that compares and hashes by value and that type checking keeps
immutable (it is not frozen at run time: see ``gateway.model._record``)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from gateway.model import PointKey, Quality, Reading

REPO = Path(__file__).resolve().parents[1]


def test_readings_compare_hash_replace_and_pickle_by_value() -> None:
    a = Reading("meter-1", "kwh", 12.5, Quality.GOOD, 1.0e9, source_ts=2.0)
    b = Reading("meter-1", "kwh", 12.5, Quality.GOOD, 1.0e9, 2.0)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != dataclasses.replace(a, value=13.0)
    assert dataclasses.replace(a, quality=Quality.BAD, value=None).good is False
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.key == PointKey("meter-1", "kwh") and a.good
    assert (a.error, a.silent_since) == (None, None)
    assert not hasattr(a, "__dict__"), "slots: no per-instance dict"


def test_mypy_refuses_assigning_to_a_reading_field(tmp_path: Path) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from gateway.model import Quality, Reading\n"
                       "r = Reading('d', 'p', 1, Quality.GOOD, 1.0)\n"
                       "r.value = 2\n")
    out, _, status = mypy_api.run(["--no-incremental", "--follow-imports=silent",
                                   "--config-file", str(REPO / "pyproject.toml"),
                                   str(snippet)])
    assert status == 1, out
    assert 'snippet.py:3: error: Property "value" defined in "Reading" is read-only' in out
