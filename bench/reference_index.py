"""Cost of rules that read another device: one site-wide templated reference against the same
pairs written with literal ids.

A site of N doors in Z fire zones (N/Z doors per zone) and a panel split into per-zone devices.
``--form templated``: ONE rule, ``{device: "FACP-1-zone-{zone}", ...}``, filled per door from
its location. ``--form literal``: Z rules, one per zone, each listing its doors and naming its
zone's panel device (what a site had to write before). Reports CPU time (process_time) to build
the evaluator, and per panel reading (each judges the N/Z doors of its zone), on a fake clock.
Run: .venv/bin/python bench/reference_index.py [--form templated|literal] [--doors N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import yaml

from gateway.alarms import Detection, RuleEvaluator
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading


def build_config(form: str, doors: int, zones: int) -> GatewayConfig:
    site: dict[str, object] = {
        "site": {"id": "bench", "name": "bench", "gateway_id": "g"},
        "brokers": {"local": {"host": "127.0.0.1"}},
        "devices": [
            *({"id": f"door-{i}", "driver": "modbus-tcp", "host": "127.0.0.1", "kind": "door",
               "location": {"zone": str(i % zones)},
               "points": [{"name": "locked", "address": 0, "type": "bit", "bit": 0}]}
              for i in range(doors)),
            {"id": "FACP-1-zone-{zone}", "driver": "mqtt", "kind": "fire_zone",
             "split_by": {"zone": "zone"},
             "points": [{"name": "event", "topic": "fire/FACP-1/events", "path": "event",
                         "type": "string"}]},
        ],
    }

    def rule(rule_id: str, panel: str, **which: object) -> dict[str, object]:
        return {"id": rule_id, **which, "category": "fire_alarm", "priority": "P0",
                "when": {"all": [{"point": "locked", "eq": True},
                                 {"device": panel, "point": "event", "eq": "FIRE"}]},
                "message": {"zh": "x", "en": "x"}}

    if form == "templated":
        site["rules"] = [rule("locked-in-fire", "FACP-1-zone-{zone}", kind="door")]
    else:
        site["rules"] = [rule(f"locked-in-fire-{z}", f"FACP-1-zone-{z}",
                              devices=[f"door-{i}" for i in range(z, doors, zones)])
                         for z in range(zones)]
    return load_config_text(yaml.safe_dump(site), source="bench")


async def run(form: str, doors: int, zones: int, readings: int) -> tuple[float, float, int]:
    config = build_config(form, doors, zones)
    clock = FakeClock()
    seen: list[Detection] = []

    async def sink(d: Detection) -> None:
        seen.append(d)

    start = time.process_time()
    rules = RuleEvaluator(config, clock, sink)
    built = time.process_time() - start
    for i in range(doors):
        await rules.process(Reading(f"door-{i}", "locked", True, Quality.GOOD, clock.time()))
    before = rules.evaluations
    start = time.process_time()
    for n in range(readings):
        event = "FIRE" if n % 2 else "NORMAL"
        await rules.process(Reading(f"FACP-1-zone-{n % zones}", "event", event, Quality.GOOD,
                                    clock.time()))
    per_reading = (time.process_time() - start) / readings
    assert seen, "fire in a zone with locked doors raised nothing"
    return built, per_reading, rules.evaluations - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=("templated", "literal"), default="templated")
    parser.add_argument("--doors", type=int, default=500)
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--readings", type=int, default=5000)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # one alarm line per door would swamp the result
    built, per_reading, judged = asyncio.run(run(args.form, args.doors, args.zones,
                                                 args.readings))
    print(f"{args.form}: {args.doors} doors, {args.zones} zones: build {built * 1e3:.1f} ms CPU, "
          f"{per_reading * 1e6:.1f} us CPU per panel reading "
          f"({judged / args.readings:.1f} instances judged each)")


if __name__ == "__main__":
    main()
