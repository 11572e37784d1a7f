"""The InfluxDB stage's pure parts: the line-protocol schema and the bounded buffer file."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.bus import Bus
from gateway.check_cli import print_summary
from gateway.clock import SystemClock
from gateway.config import InfluxConfig, load_config_text
from gateway.influx import Batch, DeviceTags, DiskBuffer, InfluxWriter, LineEncoder
from gateway.model import Quality, Reading

TS = 1_767_225_600.123


def encoder(precision: str = "ms") -> LineEncoder:
    return LineEncoder("sun garden", {
        "M1": DeviceTags(building="A座", floor="3", kind="energy_meter"),
        "door-{door}": DeviceTags(building="B", floor=None, kind="access_door"),
    }, precision)


def test_numbers_booleans_strings_and_quality_follow_the_schema() -> None:
    enc = encoder()
    assert enc.line(Reading("M1", "kwh", 12, Quality.GOOD, TS)) == (
        r'reading,site=sun\ garden,building=A座,floor=3,device=M1,point=kwh,kind=energy_meter '
        'value=12.0,quality="good" 1767225600123')
    assert 'value=1.0,quality="good"' in enc.line(Reading("M1", "run", True, Quality.GOOD, TS))
    assert 'value=0.0,' in enc.line(Reading("M1", "run", False, Quality.GOOD, TS))
    assert 'text="say \\"hi\\"",quality="good"' in enc.line(
        Reading("M1", "msg", 'say "hi"', Quality.GOOD, TS))
    lost = enc.line(Reading("M1", "kwh", None, Quality.COMM_LOSS, TS, error="timeout"))
    assert lost.endswith(' quality="comm-loss" 1767225600123'), "no value field when silent"


def test_tags_are_escaped_missing_ones_left_out_and_templates_matched() -> None:
    enc = encoder("s")
    line = enc.line(Reading("door-7", "open", 1, Quality.GOOD, TS))
    assert line.startswith(r"reading,site=sun\ garden,building=B,device=door-7,point=open,"
                           "kind=access_door "), "floor has no value: the tag is left out"
    assert line.endswith(" 1767225600")
    odd = enc.line(Reading("x,y=z w", "p", 1.5, Quality.GOOD, TS))
    assert r"device=x\,y\=z\ w,point=p value=1.5" in odd, "unknown device: only its own tags"


@pytest.mark.parametrize(("precision", "ts"), [("ms", "1767225600123"),
                                               ("us", "1767225600123000"),
                                               ("ns", "1767225600123000000")])
def test_precision_scales_the_timestamp(precision: str, ts: str) -> None:
    assert encoder(precision).line(Reading("M1", "kwh", 1, Quality.GOOD, TS)).endswith(ts)


def test_nan_is_not_written_as_a_value() -> None:
    line = encoder().line(Reading("M1", "kwh", float("nan"), Quality.GOOD, TS))
    assert "value=" not in line and 'quality="good"' in line


def batch(seq: int, points: int = 10) -> Batch:
    return Batch(seq, points, b"x" * (points * 10))


def test_buffer_is_bounded_drops_oldest_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "buf.sqlite3"
    buf = DiskBuffer(path, max_points=30, max_bytes=10_000)
    assert buf.open() == 1
    assert [buf.push(batch(s)) for s in (1, 2, 3)] == [0, 0, 0]
    assert buf.push(batch(4)) == 10, "one batch (10 points) dropped to make room"
    assert (buf.points, buf.batches) == (30, 3)
    oldest = buf.oldest()
    assert oldest is not None and oldest.seq == 2
    buf.close()

    again = DiskBuffer(path, max_points=30, max_bytes=10_000)
    assert again.open() == 5, "sequence numbers continue after a restart"
    assert (again.points, again.bytes) == (30, 300)
    assert again.push(batch(1)) == 10, "full: a batch older than all kept is the one to go"
    again.remove(batch(3))
    assert again.push(batch(1)) == 0, "a failed batch goes back in its place: oldest first"
    first = again.oldest()
    assert first is not None and first.seq == 1
    again.remove(first)
    again.remove(first)  # twice: counted once
    assert (again.points, again.batches) == (20, 2)
    again.close()


def test_buffer_bytes_bound_and_a_batch_bigger_than_the_buffer(tmp_path: Path) -> None:
    buf = DiskBuffer(None, max_points=1_000, max_bytes=250)
    buf.open()
    buf.push(batch(1))
    buf.push(batch(2))
    assert buf.push(batch(3)) == 10, "bytes bound: the oldest goes"
    assert buf.push(batch(4, points=30)) == 30, "too big for the whole buffer: only it goes"
    assert buf.points == 20
    buf.close()


def test_config_checks_url_and_buffer_against_batch_size() -> None:
    cfg = InfluxConfig.model_validate({"url": "http://influx:8086/", "bucket": "b"})
    assert cfg.url == "http://influx:8086" and cfg.precision == "ms"
    with pytest.raises(ValidationError, match="no path"):
        InfluxConfig.model_validate({"url": "http://influx:8086/api/v2/write", "bucket": "b"})
    with pytest.raises(ValidationError, match="at least batch_size"):
        InfluxConfig.model_validate({"url": "http://i:1", "bucket": "b", "batch_size": 100,
                                     "buffer": {"max_points": 10}})


def test_check_config_summarises_the_section_without_the_token() -> None:
    config = load_config_text("""
site: {id: s, name: n, gateway_id: g}
influxdb: {url: "http://influx:8086", bucket: "db/autogen", token: "${T}", batch_size: 200}
""", env={"T": "secret-token-value"})
    out = io.StringIO()
    print_summary(config, out)
    text = out.getvalue()
    assert ("influxdb: http://influx:8086 bucket db/autogen, batches of 200 or every 1 s, "
            "buffer up to 500000 points") in text
    assert "secret-token-value" not in text


async def test_a_write_cut_short_by_a_stop_is_kept_in_the_buffer(tmp_path: Path) -> None:
    """A server that takes the request and never answers: the batch in flight when the stage
    stops must not be lost."""
    held: list[asyncio.StreamWriter] = []

    async def black_hole(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = load_config_text(f"""
site: {{id: s, name: n, gateway_id: g}}
influxdb: {{url: "http://127.0.0.1:{port}", bucket: b, batch_interval: 10ms, timeout: 30s}}
""")
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=100)
    writer = InfluxWriter(config, SystemClock(), buffer_path=tmp_path / "buf.sqlite3")
    task = asyncio.create_task(writer.run(sub))
    try:
        for i in range(5):
            await bus.publish(Reading("M1", "kwh", float(i), Quality.GOOD, TS + i))
        async with asyncio.timeout(10):
            while not held:  # the request reached the server
                await asyncio.sleep(0.01)
        assert writer.status().buffered == 0, "in flight, not yet buffered"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()
    assert writer.status().buffered == 5
    again = DiskBuffer(tmp_path / "buf.sqlite3", max_points=100, max_bytes=100_000)
    again.open()
    kept = again.oldest()
    again.close()
    assert kept is not None and kept.points == 5 and kept.lines.count(b"\n") == 4
