#!/usr/bin/env bash
# Sets everything up (first run only) and runs the whole test suite: lint, types, tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k modbus -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] mypy"
.venv/bin/mypy
echo "[test] pytest"
exec .venv/bin/pytest "$@"
