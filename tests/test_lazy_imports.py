"""What ``propgw run`` loads for a config: module sets, not times.

Every library costs start time and resident memory on the Pi, so a gateway loads only what its
config uses: aiohttp for the HTTP upstream, the status API, the console or /metrics; pymodbus
for Modbus devices; aiomqtt for MQTT devices or an MQTT upstream; the InfluxDB writer for
``influxdb:``; never the simulators or the browser driver. Each test builds a Gateway in a fresh
interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Builds a Gateway from the config text on stdin (inside a loop, as ``propgw run`` does) and
#: prints the names of the loaded modules.
_BUILD = """
import asyncio, json, sys
from gateway.app import Gateway
from gateway.config import load_config_text

config = load_config_text(sys.stdin.read(), env={})

async def build() -> None:
    Gateway(config)

asyncio.run(build())
print(json.dumps(sorted(sys.modules)))
"""

SITE = """\
site: {id: lazy, name: lazy, gateway_id: gw1}
brokers:
  devices: {host: 127.0.0.1, port: 1}
  platform: {host: 127.0.0.1, port: 1}
devices:
  - {id: S1, driver: mqtt, broker: devices, kind: sensor,
     points: [{name: temp, topic: dev/S1, type: number, path: temp}]}
rules:
  - {id: hot, kind: sensor, when: {point: temp, gt: 80}, category: overheat, priority: P1,
     message: {zh: 过热, en: hot}}
"""
MQTT_UPSTREAM = "upstream: {broker: platform, topic_prefix: pm}\n"
MODBUS_DEVICE = """\
  - {id: M1, driver: modbus-tcp, host: 127.0.0.1, port: 1, unit: 1, kind: meter,
     points: [{name: power, address: 0, type: uint16}]}
"""
HTTP_UPSTREAM = """\
upstream:
  http: {url: "http://127.0.0.1:1/api/work-orders", token: token-0123456789abcdef}
"""
INFLUX = """\
influxdb: {url: "http://127.0.0.1:1", org: o, bucket: b, token: t}
"""

#: Never at run time, whatever the config: test and commissioning tools.
NEVER = {"simulators", "playwright", "amqtt"}
#: pydantic's plugin lookup (an entry-point scan) and what it loads: gateway/__init__.py answers
#: it. Here when a pydantic version looks for plugins another way.
PLUGIN_LOOKUP = {"importlib.metadata", "zipfile", "csv"}
#: Only what a config with mistakes needs: "did you mean" hints.
ON_MISTAKES = {"difflib"}
#: What paho's `import urllib.request` would load: it reads proxy settings only with PySocks.
PROXY_LOOKUP = {"http.client", "email", "email.parser"}


def loaded(config: str) -> set[str]:
    """Top-level packages and gateway modules loaded once a Gateway is built from ``config``."""
    out = subprocess.run([sys.executable, "-c", _BUILD], input=config, cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return set(json.loads(out))


def packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_mqtt_site_loads_no_http_modbus_influx_or_console() -> None:
    modules = loaded(SITE + MQTT_UPSTREAM)
    assert "aiomqtt" in packages(modules)  # what the site does use is there
    assert packages(modules) & {"aiohttp", "pymodbus", "serial", "influxdb_client", *NEVER} \
        == set()
    assert not {"gateway.console", "gateway.http_server", "gateway.influx", "gateway.metrics",
                "gateway.telemetry", "gateway.accounting", "drivers.modbus._link"} & modules
    assert not PLUGIN_LOOKUP & modules
    assert not ON_MISTAKES & modules
    assert not PROXY_LOOKUP & modules
    assert "orjson" not in packages(modules), "loaded with the first JSON payload only"


def test_the_c_json_decoder_loads_with_the_first_json_payload() -> None:
    script = ("import sys\n"
              "from drivers.mqtt import Payload\n"
              "before = 'orjson' in sys.modules\n"
              "Payload(b'21.5').text()\n"
              "plain = 'orjson' in sys.modules\n"
              "Payload(b'{\"t\": 1}').document()\n"
              "print(before, plain, 'orjson' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["False", "False", "True"]


def test_each_config_section_loads_its_library() -> None:
    with_modbus = loaded(SITE.replace("devices:\n", "devices:\n" + MODBUS_DEVICE))
    assert {"pymodbus", "drivers"} <= packages(with_modbus)
    assert "drivers.modbus._link" in with_modbus

    with_influx = loaded(SITE + INFLUX)
    assert "gateway.influx" in with_influx

    with_console = loaded(SITE + MQTT_UPSTREAM + "console: {port: 1}\n")
    assert "aiohttp" in packages(with_console)
    assert "gateway.console" in with_console

    for modules in (with_modbus, with_influx, with_console):
        assert packages(modules) & NEVER == set()


def test_modbus_site_with_http_upstream_loads_no_mqtt_client() -> None:
    site = SITE.replace("devices:\n  - {id: S1, driver: mqtt, broker: devices, kind: sensor,\n"
                        "     points: [{name: temp, topic: dev/S1, type: number, path: temp}]}\n",
                        "devices:\n" + MODBUS_DEVICE.replace("kind: meter", "kind: sensor")
                        .replace("name: power", "name: temp"))
    assert "driver: mqtt" not in site
    modules = loaded(site + HTTP_UPSTREAM)
    assert {"pymodbus", "aiohttp"} <= packages(modules)
    assert packages(modules) & {"aiomqtt", "paho", "influxdb_client", *NEVER} == set()


#: Prints the config sections whose own validator was built while a Gateway was built.
_BUILT = """
import asyncio, json, sys
import gateway.config as c
from gateway.app import Gateway
from gateway.config import load_config_text

config = load_config_text(sys.stdin.read(), env={})

async def build() -> None:
    Gateway(config)

asyncio.run(build())
print(json.dumps(sorted(n for n in c.__all__ if getattr(getattr(c, n), "__pydantic_complete__",
                                                         False))))
"""


def test_config_sections_build_no_validator_of_their_own() -> None:
    # GatewayConfig's validator covers every section; one per section would be a second copy.
    out = subprocess.run([sys.executable, "-c", _BUILT], input=SITE + MQTT_UPSTREAM, cwd=REPO,
                         check=True, capture_output=True, text=True, timeout=60).stdout
    built = set(json.loads(out))
    assert "GatewayConfig" in built
    # Sections the file gives (validated inside GatewayConfig) or leaves off (None). A section
    # left to its default is built when the default is made: that one is validated alone.
    assert not {"SiteConfig", "BrokerConfig", "UpstreamConfig", "MqttDevice", "MqttPoint",
                "ConsoleConfig", "MetricsConfig", "InfluxConfig", "TelemetryConfig",
                "AccountingConfig"} & built, built


#: Imports gateway and paho, then uses urllib.request; prints what was loaded at each step.
_URLLIB = """
import json, sys
import gateway
import paho.mqtt.client
import urllib.request
steps = ["http.client" in sys.modules]
proxies = urllib.request.getproxies()
from urllib.request import proxy_bypass
steps += ["http.client" in sys.modules, isinstance(proxies, dict), callable(proxy_bypass),
          type(sys.modules["urllib.request"]).__name__]
print(json.dumps(steps))
"""


def test_urllib_request_loads_on_first_use_only(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _URLLIB], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert json.loads(out) == [False, True, True, True, "module"]


def test_urllib_request_loads_as_usual_when_paho_may_use_it(tmp_path: Path) -> None:
    # With PySocks installed, paho's connect threads read proxy settings: no lazy module then.
    (tmp_path / "socks.py").write_text("", encoding="utf-8")
    script = "import sys, gateway; print('urllib.request' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, text=True,
                         capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}).stdout
    assert out.strip() == "False"
