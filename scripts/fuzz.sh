#!/usr/bin/env bash
# The long fuzz run (the normal suite runs the same tests with a small, fixed set of examples).
# Sets up like scripts/test.sh, then:
#   1. the hypothesis fuzz tests (config loader and check-config, MQTT payload and Modbus
#      decoders) under the "fuzz" profile: random seeds and PROPGW_FUZZ_FACTOR (default 50)
#      times the normal examples. A failure is kept in .hypothesis/ and tried first next time;
#      hypothesis prints the smallest failing input and a @reproduce_failure line.
#   2. propgw check-config on PROPGW_FUZZ_FILES (default 600) generated hostile files, in
#      subprocesses, printing files / exit 2 / other exit codes / tracebacks / hangs.
# About 10 minutes on two cores with the defaults. Extra arguments go to pytest, e.g.
#   PROPGW_FUZZ_FACTOR=500 scripts/fuzz.sh -k mqtt
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export HYPOTHESIS_PROFILE=fuzz
export PROPGW_FUZZ_FACTOR="${PROPGW_FUZZ_FACTOR:-50}"
echo "[fuzz] hypothesis: ${PROPGW_FUZZ_FACTOR}x the examples of the normal suite"
# --timeout 0: the 60 s per-test limit is for the normal suite; here one test runs thousands
# of examples, and each example asserts its own time bound.
.venv/bin/pytest -q --timeout 0 --hypothesis-show-statistics \
  tests/test_config_fuzz.py tests/test_decoder_fuzz.py "$@"
echo "[fuzz] check-config on ${PROPGW_FUZZ_FILES:-600} hostile files"
exec .venv/bin/python -m tests.hostile_configs --count "${PROPGW_FUZZ_FILES:-600}" \
  --seed "${PROPGW_FUZZ_SEED:-8}"
