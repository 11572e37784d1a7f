"""Hypothesis profiles for the fuzz tests and the example budget each test gets.

Two profiles, chosen by the ``HYPOTHESIS_PROFILE`` environment variable:

* ``ci`` (the default, used by ``pytest`` and ``scripts/test.sh``): ``derandomize=True`` and no
  example database, so every run tries exactly the same examples. A green branch stays green,
  and a red one is red on every machine with the same failing example, which hypothesis prints.
  Exploring new inputs is the long run's job, not CI's.
* ``fuzz`` (``scripts/fuzz.sh``): random seeds, ``PROPGW_FUZZ_FACTOR`` (default 50) times the
  examples, and an example database in ``.hypothesis/`` so that a failure found once is tried
  first on every later run until it is fixed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

REPO = Path(__file__).resolve().parents[1]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,  # wall-time bounds are asserted by the tests themselves, with margin
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(REPO / ".hypothesis" / "examples"),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

#: How many times more examples each fuzz test runs under the ``fuzz`` profile.
FACTOR = int(os.environ.get("PROPGW_FUZZ_FACTOR", "50")) if PROFILE == "fuzz" else 1


def budget(examples: int) -> settings:
    """``examples`` in the normal suite; :data:`FACTOR` times as many in the long fuzz run."""
    return settings(max_examples=examples * FACTOR)
