#!/usr/bin/env bash
# Sets everything up (first run only) and runs the demo. Extra arguments go to `propgw demo`,
# e.g. scripts/demo.sh --duration 60 --upstream mqtt://127.0.0.1:1883
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo  # the demo extra: its embedded MQTT broker
exec .venv/bin/propgw demo "$@"
