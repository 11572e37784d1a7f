"""CPU per MQTT message of the gateway's reading path, in process, without the MQTT client.

``N`` ready-made messages ``{ts, temp, hum, seq, sent_us}`` (4 readings each, the device
timestamp from ``ts``) go through the MQTT driver's dispatch, the point stage, the bus, the
alarm engine (a P3 rule on ``temp``, a P0 fire rule elsewhere) and the console's last-readings
view, with the config of ``bench/mqtt_client_path.py``; CPU time (``time.process_time``) until
the alarm engine has taken every reading. ``TREE`` is the source tree to import (A/B: run it
once with each tree, alternately); ``-p`` prints a profile (``PROFILE_SORT=cumulative`` to
sort it so). The consumers run after every ``EVERY`` messages (default 50: a busy gateway,
many messages per wake-up); ``--every 1`` is a quiet one, where each message crosses the
pipeline alone (1,000 msg/s). ``--devices D`` adds D more devices (one point each, on topics
``site/m/<i>/data`` that no message uses): a large site, whose every message the driver must
route among all of them.

    .venv/bin/python bench/reading_path.py TREE [N] [-p] [--every EVERY] [--devices D]
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


async def main(tree: str, count: int, profile: bool, every: int, devices: int) -> None:
    sys.path.insert(0, tree)
    import aiomqtt

    from drivers.mqtt import build_mqtt_drivers
    from gateway.alarms import AlarmEngine
    from gateway.bus import Bus, Overflow
    from gateway.clock import SystemClock
    from gateway.config import load_config_text
    from gateway.points import PointStage
    from gateway.readings import LastReadings

    site = (HERE / "mqtt_client_path.py").read_text().split('SITE = """', 1)[1].split('"""')[0]
    site = site.format(state="/nonexistent", port=1883, tag="x").replace(
        "state_dir: /nonexistent\n", "")
    site = site.replace("\ndevices:\n", "\ndevices:\n" + _more_devices(devices), 1)
    config = load_config_text(site)
    clock = SystemClock()
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=10_000, overflow=Overflow.BLOCK)
    view = LastReadings()
    inline = hasattr(view, "attach")  # as the tree's gateway/app.py wires it
    if inline:
        view.attach(bus)
    else:
        feed = bus.subscribe("readings", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    points = PointStage(config.devices, clock, bus.publish)

    async def announce(_: object) -> None:
        return None

    engine = AlarmEngine(config, clock, announce)
    driver = build_mqtt_drivers(config, clock)[0]
    driver._sink = points.publish
    link = next(link for link in driver._links if link.lane.name == "telemetry")
    messages = _messages(aiomqtt, count)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(engine.run(alarms)), tg.create_task(points.run())]
        if not inline:
            tasks.append(tg.create_task(view.run(feed)))
        await asyncio.sleep(0.2)
        prof = cProfile.Profile() if profile else None
        cpu = time.process_time()
        if prof is not None:
            prof.enable()
        for k, message in enumerate(messages):
            await driver._dispatch(message, link.routes)
            if k % every == 0:
                await asyncio.sleep(0)  # let the consumers run, as between socket reads
        await alarms.queue.join()
        if prof is not None:
            prof.disable()
        used = time.process_time() - cpu
        print(f"{tree}: {1e6 * used / count:.1f} us CPU per message ({count} messages, "
              f"consumers run every {every}, {devices} more devices, "
              f"{alarms.delivered} readings to the alarm engine)")
        if prof is not None:
            order = os.environ.get("PROFILE_SORT", "tottime")  # or cumulative
            pstats.Stats(prof).sort_stats(order).print_stats(40)
        for task in tasks:
            task.cancel()


def _more_devices(count: int) -> str:
    """``count`` devices of a kind no rule reads, each on a topic of its own."""
    return "".join(f"  - {{id: m-{i}, driver: mqtt, broker: devices, kind: energy_meter, "
                   f"points: [{{name: kwh, topic: site/m/{i}/data, path: kwh}}]}}\n"
                   for i in range(count))


def _messages(aiomqtt: Any, count: int) -> list[Any]:
    messages = []
    for i in range(count):
        now = time.time()
        body = {"ts": round(now, 3), "temp": 20.0 + (i % 50) / 10, "hum": 40 + i % 7,
                "seq": i, "sent_us": int(now * 1e6)}
        messages.append(aiomqtt.Message(f"bench/{i % 10}/data", json.dumps(body).encode(), 1,
                                        False, i % 60000 + 1, None))
    try:  # from 2026-12-06 the driver takes the lane's own messages
        from gateway.mqtt_lane import LaneMessage  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return messages
    return [LaneMessage(m.topic.value, m.payload, m.qos, m.mid, m.retain) for m in messages]


if __name__ == "__main__":
    argv = sys.argv[1:]
    every = 50
    if "--every" in argv:
        at = argv.index("--every")
        every = max(1, int(argv[at + 1]))
        del argv[at:at + 2]
    devices = 0
    if "--devices" in argv:
        at = argv.index("--devices")
        devices = max(0, int(argv[at + 1]))
        del argv[at:at + 2]
    args = [a for a in argv if a != "-p"]
    asyncio.run(main(args[0], int(args[1]) if len(args) > 1 else 20_000, "-p" in argv, every,
                     devices))
