#!/usr/bin/env bash
# Sets up propgw on a fresh Debian / Raspberry Pi OS machine: system packages, a virtualenv in
# .venv, and propgw installed into it (editable). Safe to run again; does only what is missing.
#   scripts/setup.sh          runtime only (production)
#   scripts/setup.sh --demo   plus the demo's embedded MQTT broker (the `demo` extra: amqtt)
#   scripts/setup.sh --test   plus what the test suite needs (the demo extra, mosquitto, socat,
#                             tmux, influxdb, pytest, linters, Debian's chromium and a CJK font for the
#                             browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_demo=0
[ "${1:-}" = "--test" ] && want_test=1
[ "${1:-}" = "--demo" ] && want_demo=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "$want_test" -eq 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v socat >/dev/null 2>&1 || missing+=(socat)
  # tmux: a real terminal for the tests of `propgw alarms watch` and of password prompts.
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  # influxdb (1.6.7 in Debian 12): a real engine for the InfluxDB tests (tests/influx_support.py).
  command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || missing+=(influxdb)
  # prometheus: a real Prometheus server scrapes the gateway's /metrics in the tests.
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  # The browser tests drive Debian's chromium (Playwright's own browser download cannot work
  # here); a small CJK font so Chinese text renders as glyphs in their screenshots, not boxes.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  fc-list ':lang=zh-cn' family 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "propgw needs Python 3.11 or newer (Debian 12 / Raspberry Pi OS 12 have it)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating virtualenv .venv"
  python3 -m venv .venv
fi
extras=""
[ "$want_demo" -eq 1 ] && extras="[demo]"
[ "$want_test" -eq 1 ] && extras="[test]"  # includes [demo]
stamp=".venv/.propgw-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing propgw${extras} and its dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 \
    | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 \
    | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import gateway.cli' || { echo "installation failed" >&2; exit 1; }
  touch "$stamp"
fi
say "ready: $(.venv/bin/propgw --version)"
