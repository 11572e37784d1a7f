"""Rule evaluation cost per reading with 500 rules loaded.

Builds a site of 50 elevators (the elevator-modbus profile) with 500 rules: the 14 rules of the
elevator detector pack applied to every elevator plus 486 extra composite rules (threshold with
deadband, equality, any/all) spread over the devices. Feeds realistic readings (mostly
unchanged values, as polling produces) straight into the rule evaluator on a fake clock and
reports the cost per reading. Run: .venv/bin/python bench/rule_eval.py [--readings N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import time

import yaml

from gateway.alarms import AlarmEngine, Detection, RuleEvaluator
from gateway.alarms._events import AlarmEvent
from gateway.bus import Bus, Subscription
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading

POINTS = ["car_status", "car_direction", "door_zone", "car_position", "door_status",
          "passenger_status", "service_mode", "power_status", "alarm_button", "fault_code"]


def build_config(devices: int = 50, extra_rules: int = 486) -> GatewayConfig:
    rng = random.Random(1)
    site: dict[str, object] = {
        "site": {"id": "bench", "name": "bench", "gateway_id": "g"},
        "devices": [{"id": f"E{i}", "driver": "modbus-tcp", "host": "127.0.0.1",
                     "profile": "elevator-modbus"} for i in range(devices)],
        "detectors": ["elevator"],
        "rules": [],
    }
    rules = site["rules"]
    assert isinstance(rules, list)
    for i in range(extra_rules):
        a, b = rng.sample(POINTS, 2)
        rules.append({
            "id": f"extra-{i}", "devices": [f"E{rng.randrange(devices)}"],
            "when": {"all": [{"point": a, "gt": rng.randint(0, 5), "deadband": 1},
                             {"any": [{"point": b, "eq": rng.randint(0, 3)},
                                      {"point": "car_position", "ge": rng.randint(1, 18)}]}]},
            "for": "5s", "category": "bench", "priority": "P3",
            "message": {"zh": "测试", "en": "bench"},
        })
    config = load_config_text(yaml.safe_dump(site), source="bench")
    assert len(config.rules) == 14 + extra_rules == 500, len(config.rules)
    return config


def readings(count: int, devices: int, clock: FakeClock) -> list[Reading]:
    rng = random.Random(2)
    out = []
    for n in range(count):
        device = f"E{n % devices}"
        point = POINTS[(n // devices) % len(POINTS)]
        value = rng.choice([0, 1, 1, 1, 2])  # mostly repeats, as polling produces
        out.append(Reading(device, point, value, Quality.GOOD, clock.time()))
    return out


async def _push(bus: Bus, feed: Subscription, data: list[Reading]) -> float:
    """Seconds to push every reading through the bus and have the consumer take it."""
    start = time.perf_counter()
    for reading in data:
        await bus.publish(reading)
    await feed.queue.join()  # the consumer has taken (and processed) every reading
    return time.perf_counter() - start


async def measure(config: GatewayConfig, data: list[Reading], *,
                  lifecycle: bool) -> tuple[float, int]:
    """µs per reading through the bus into rule evaluation alone, or into the whole alarm
    stage (rules + ISA-18.2 lifecycle with an in-memory journal); and the evaluations made."""
    clock = FakeClock()

    async def ignore(event: Detection | AlarmEvent) -> None:
        return None

    bus = Bus()
    feed = bus.subscribe("alarms", maxsize=1000)
    engine = AlarmEngine(config, clock, ignore) if lifecycle else None
    rules = engine.rules if engine is not None else RuleEvaluator(config, clock, ignore)
    task = asyncio.create_task(engine.run(feed) if engine is not None else rules.run(feed))
    elapsed = await _push(bus, feed, data)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed / len(data) * 1e6, rules.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("gateway").setLevel(logging.ERROR)  # alarms fire; their logs are noise
    config = build_config()
    instances = sum(len(config.rule_devices(r)) for r in config.rules)
    data = readings(args.readings, 50, FakeClock())
    rule_costs, engine_costs = [], []
    evaluations = 0
    for _ in range(args.repeat):
        cost, evaluations = asyncio.run(measure(config, data, lifecycle=False))
        rule_costs.append(cost)
        engine_costs.append(asyncio.run(measure(config, data, lifecycle=True))[0])
    print(f"rules loaded: {len(config.rules)}, rule instances: {instances}, "
          f"readings: {len(data)}, evaluations per reading: {evaluations / len(data):.1f}")
    print("| stage | median µs/reading | min | max |")
    print("|---|---:|---:|---:|")
    for name, costs in (("rule evaluation", rule_costs), ("alarm stage (rules + lifecycle)",
                                                           engine_costs)):
        print(f"| {name} | {statistics.median(costs):.1f} | {min(costs):.1f} | "
              f"{max(costs):.1f} |")


if __name__ == "__main__":
    main()
