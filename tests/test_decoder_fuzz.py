"""Fuzzing the device-side decoders: MQTT payloads and Modbus register words.

The drivers' contract: whatever a device sends becomes a :class:`Reading`. A payload or a
register block that does not decode raises :class:`DecodeError` (the driver turns it into a BAD
reading and a rate-limited log line); anything else escaping a decoder would end the driver's
task and with it every device on that broker or bus. So, for any bytes, any JSON and any
register words:

* the decoder returns a value of a config ``Value`` type (finite if a float), or raises
  ``DecodeError`` carrying the device and a short, one-line reason;
* nothing else is raised, and each decode takes far less than a second.

Hypothesis runs a fixed set of examples in the normal suite (see tests/fuzz_support.py) and
many more under ``scripts/fuzz.sh``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import pytest
from hypothesis import assume, event, example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.modbus import plan_device
from drivers.modbus._codec import decode_point
from drivers.mqtt import Payload, PointDecoder
from gateway.clock import FakeClock
from gateway.config import ModbusPoint, ModbusTcpDevice, MqttPoint
from gateway.errors import DecodeError, DeviceError, LinkError
from gateway.model import Quality
from tests.fuzz_support import budget
from tests.support import Mosquitto
from tests.test_mqtt_driver import Sink, only_driver, publish, running, site_config

DECODE_BOUND = 1.0  # seconds per decode; a real one takes microseconds

# --------------------------------------------------------------------------- MQTT: strategies

# Most resolve in the documents _doc_with builds; a few lead into the wrong kind of node.
_PATHS = [None, None, "v", "v", "x", "a.b[0].c", "status.door", "zones[2].state", "zones[0]",
          "zones[-2]", "ts", "a.ts", "a[0]", "[0]", "missing.field"]
_finite = st.floats(allow_nan=False, allow_infinity=False)
_map_values = st.one_of(st.booleans(), st.integers(-1000, 1000), _finite,
                        st.text(max_size=10))


@st.composite
def mqtt_points(draw: st.DrawFn) -> MqttPoint:
    path = draw(st.sampled_from(_PATHS))
    spec: dict[str, Any] = {
        "name": "p", "topic": "t",
        "type": draw(st.sampled_from(["auto", "number", "int", "bool", "string"])),
        "path": path,
        "scale": draw(st.one_of(st.just(1.0), _finite, st.sampled_from([0.1, 1e308, -1e-308]))),
        "offset": draw(st.one_of(st.just(0.0), _finite)),
    }
    if draw(st.booleans()):
        spec["map"] = draw(st.dictionaries(
            st.one_of(st.text(max_size=6), st.sampled_from(["0", "1", "true", "OPEN", "1.5"])),
            _map_values, max_size=4))
    if path is not None and draw(st.booleans()):
        spec["timestamp_path"] = draw(st.sampled_from(["ts", "a.ts", "[0]"]))
    try:
        return MqttPoint.model_validate(spec)
    except ValidationError:
        assume(False)
        raise  # unreachable: assume(False) aborts the example


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), _finite, st.text(max_size=20))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _doc_with(value: Any) -> dict[str, Any]:
    """A document in which every path of _PATHS finds ``value`` (or something near it)."""
    return {"v": value, "a": {"b": [{"c": value}], "ts": value}, "x": value, "ts": value,
            "status": {"door": value}, "zones": [value, value, {"state": value}]}


# Texts JSON cannot produce from Python values: numbers beyond float or beyond Python's
# int-to-text limit, NaN spellings, deep nesting, lone surrogates.
_RAW_TEXTS = ["9" * 5000, "-" + "9" * 4301, "1" + "0" * 400, "1e400", "-1e400", "1e-400",
              "NaN", "nan", "Infinity", "-Infinity", "inf", "0x10", "1_000", "１２３", "٣",
              "+1", "-0", ".5", "5.", "1e5", "   ", "", "\x00", "null", "NULL", "True", "ON",
              '"x"', '"\\ud800"', "\"" + "\\u0000" * 3 + "\"", "[" * 100_000, "{" * 50_000,
              '{"v": ' + "9" * 5000 + "}", '{"v": 1e400, "ts": 1e400}',
              '{"v": 1, "ts": ' + "9" * 400 + "}", '{"ts": "9999-12-31T23:59:59", "v": 1}',
              '{"ts": "0001-01-01T00:00:00+14:00", "v": 1}', '{"ts": "' + "9" * 5000 + '"}',
              '{"ts": -' + "9" * 320 + ', "v": 1}', '{"v": "' + "9" * 5000 + '"}',
              '{"v": ' + "1" * 4300 + "}", "9" * 4300, "1" * 309, "-" + "1" * 309]
_raw_json_number = st.builds(lambda digits, sign: sign + "9" * digits,
                             st.integers(300, 6000), st.sampled_from(["", "-"]))

mqtt_payloads = st.one_of(
    _json_scalars.map(lambda v: json.dumps(_doc_with(v)).encode()),
    _json_scalars.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    _json.map(lambda v: json.dumps(_doc_with(v)).encode()),
    _raw_json_number.map(lambda n: json.dumps(_doc_with(0)).replace("0", n, 1).encode()),
    _raw_json_number.map(str.encode),
    st.sampled_from(_RAW_TEXTS).map(str.encode),
    st.text(max_size=50).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def check_mqtt(point: MqttPoint, raw: bytes | str) -> None:
    try:
        decoder = PointDecoder(point)
    except ValueError:  # a config problem (bad path), reported by check-config
        assume(False)
        return
    started = time.monotonic()
    error: DecodeError | None = None
    try:
        decoded = decoder.decode(Payload(raw), device="dev-1")
    except DecodeError as exc:
        error = exc
    if error is not None:
        event("mqtt: DecodeError")
        assert error.device == "dev-1"
        assert_reason(error.args[0])
    else:
        event("mqtt: decoded")
        assert_value(decoded.value)
        if decoded.source_ts is not None:
            assert isinstance(decoded.source_ts, float)
            assert math.isfinite(decoded.source_ts)
    assert time.monotonic() - started < DECODE_BOUND


def assert_reason(reason: object) -> None:
    """What a BAD reading's ``error`` shows operators: short, one printable line."""
    assert isinstance(reason, str) and reason
    assert reason.isprintable(), repr(reason)
    assert len(reason) <= 300, len(reason)


def assert_value(value: object) -> None:
    assert isinstance(value, bool | int | float | str), type(value)
    if isinstance(value, float):
        assert math.isfinite(value), value


def _point(**spec: Any) -> MqttPoint:
    return MqttPoint.model_validate({"name": "p", "topic": "t", **spec})


@budget(400)
@given(mqtt_points(), mqtt_payloads)
# What the fuzzer found before the decoder was fixed, tried first on every run:
@example(_point(), b"9" * 5000)  # int(): Exceeds the limit (4300 digits)
@example(_point(type="number", scale=0.5), b"9" * 400)  # OverflowError while scaling
@example(_point(path="v", scale=0.5), b'{"v": ' + b"9" * 400 + b"}")
@example(_point(path="v"), b'{"v": ' + b"9" * 5000 + b"}")
@example(_point(path="v"), b'{"v": 1e400}')  # infinity decoded as a GOOD value
@example(_point(path="v", timestamp_path="ts"), b'{"v": 1, "ts": ' + b"9" * 400 + b"}")
@example(_point(path="v", type="number", scale=1e308), b'{"v": ' + b"9" * 300 + b"}")
def test_mqtt_any_payload_decodes_or_is_a_decode_error(point: MqttPoint, raw: bytes) -> None:
    check_mqtt(point, raw)


@budget(100)
@given(mqtt_points(), st.text(max_size=50))
def test_mqtt_text_payloads_from_a_str(point: MqttPoint, raw: str) -> None:
    # aiomqtt hands over bytes; the driver also accepts str (and turns other types to str).
    check_mqtt(point, raw)


# --------------------------------------------------------------------------- Modbus

_MODBUS_TYPES = ["bool", "bit", "int16", "uint16", "int32", "uint32", "float32", "int64",
                 "uint64", "float64"]


@st.composite
def modbus_points(draw: st.DrawFn) -> ModbusPoint:
    type_ = draw(st.sampled_from(_MODBUS_TYPES))
    spec: dict[str, Any] = {
        "name": "p", "address": draw(st.integers(0, 65535)), "type": type_,
        "function": "coil" if type_ == "bool" else draw(st.sampled_from(["holding", "input"])),
        "byte_order": draw(st.sampled_from(["big", "little"])),
        "word_order": draw(st.sampled_from(["big", "little"])),
        "scale": draw(st.one_of(st.just(1.0), _finite, st.sampled_from([0.1, 1e308]))),
        "offset": draw(st.one_of(st.just(0.0), _finite)),
    }
    if type_ == "bit":
        spec["bit"] = draw(st.integers(0, 15))
    if draw(st.booleans()):
        spec["map"] = draw(st.dictionaries(
            st.one_of(st.sampled_from(["0", "1", "true", "false", "2.5", "65535"]),
                      st.integers(-5, 5)), _map_values, max_size=4))
    try:
        return ModbusPoint.model_validate(spec)
    except ValidationError:
        assume(False)
        raise


# pymodbus hands over 0..65535 (bits as bools); a wrong count or an out-of-range word can only
# come from a bug or a fake, and must still be a DecodeError, not a crash.
_words = st.one_of(
    st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=6),
    st.lists(st.integers(-(2**20), 2**20), min_size=0, max_size=6),
    st.lists(st.booleans(), min_size=0, max_size=3),
    st.lists(st.sampled_from([0, 0xFFFF, 0x7FFF, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7FF0,
                              0xFFF0]), min_size=1, max_size=4),
)


@budget(400)
@given(modbus_points(), st.data())
def test_modbus_any_words_decode_or_are_a_decode_error(point: ModbusPoint,
                                                       data: st.DataObject) -> None:
    exact = st.lists(st.integers(0, 0xFFFF), min_size=point.width, max_size=point.width)
    words = data.draw(st.one_of(exact, exact, _words))
    started = time.monotonic()
    error: DecodeError | None = None
    try:
        value = decode_point(point, words, device="dev-1")
    except DecodeError as exc:
        error = exc
    if error is not None:
        event("modbus: DecodeError")
        assert error.device == "dev-1" and error.address == point.address
        assert_reason(error.args[0])
    else:
        event("modbus: decoded")
        assert_value(value)
        if len(words) == point.width and not point.map and point.type != "bool":
            assert all(0 <= int(w) <= 0xFFFF for w in words)
    assert time.monotonic() - started < DECODE_BOUND


@st.composite
def modbus_devices(draw: st.DrawFn) -> ModbusTcpDevice:
    points = draw(st.lists(modbus_points(), min_size=1, max_size=6))
    renamed = [p.model_copy(update={"name": f"p{i}", "address": p.address % 300})
               for i, p in enumerate(points)]
    assume(all(p.address + p.width <= 65536 for p in renamed))
    return ModbusTcpDevice.model_validate({
        "id": "dev-1", "driver": "modbus-tcp", "host": "127.0.0.1",
        "points": [p.model_dump() for p in renamed],
        "max_gap": draw(st.integers(0, 100))})


@budget(200)
@given(modbus_devices(), st.data())
def test_modbus_planned_blocks_decode_point_by_point(device: ModbusTcpDevice,
                                                     data: st.DataObject) -> None:
    # What the link does with each answered block: slice it per point, decode each point.
    for block in plan_device(device):
        if block.table in ("coil", "discrete_input"):
            answer: list[Any] = data.draw(st.lists(st.booleans(), min_size=block.count,
                                                   max_size=block.count))
        else:
            answer = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=block.count,
                                        max_size=block.count))
        for point in block.points:
            error: DecodeError | None = None
            try:
                value = decode_point(point, block.slice_for(point, answer), device="dev-1")
            except DecodeError as exc:
                error = exc
            if error is None:
                assert_value(value)
            else:
                # Only a float that is NaN/infinite (raw or scaled) may fail a full block.
                assert "float" in point.type or point.scale != 1 or point.offset != 0, error
                assert_reason(error.args[0])


# --------------------------------------------------------------------------- Modbus on the wire
# A real pymodbus client against a loopback server that answers each request with hostile
# bytes: whatever pymodbus makes of them, guarded_read returns exactly the registers asked for
# or raises one of the gateway's device/link errors, within the device's deadline.

_REPLY_KINDS = ["correct", "correct-split", "exception", "byte-count", "wrong-fc", "random-pdu",
                "random-frame", "bad-header", "close"]


@st.composite
def modbus_replies(draw: st.DrawFn) -> tuple[str, int, bytes]:
    """(kind, random int, random bytes): turned into a reply by :func:`_reply`."""
    return (draw(st.sampled_from(_REPLY_KINDS)), draw(st.integers(0, 255)),
            draw(st.binary(max_size=300)))


def _reply(kind: str, n: int, blob: bytes, request: bytes) -> list[bytes]:
    """The bytes to send (in chunks) for one Modbus TCP request."""
    tid, unit, fc = request[0:2], request[6], request[7]
    count = int.from_bytes(request[10:12], "big")
    if fc in (1, 2):
        body = (blob * 2)[:(count + 7) // 8].ljust((count + 7) // 8, b"\x00")
    else:
        body = (blob * 2)[:2 * count].ljust(2 * count, b"\x00")
    pdu = {
        "correct": bytes([fc, len(body)]) + body,
        "correct-split": bytes([fc, len(body)]) + body,
        "exception": bytes([fc | 0x80, n]),
        "byte-count": bytes([fc, n]) + blob[:n + 3],
        "wrong-fc": bytes([n]) + blob[:20],
        "random-pdu": blob[:253],
    }.get(kind, b"")
    if kind == "random-frame":
        return [blob]
    if kind == "close":
        return []
    length = len(pdu) + 1
    if kind == "bad-header":
        return [tid + bytes([n, 0]) + (n * 7 % 300).to_bytes(2, "big") + bytes([unit]) + pdu]
    frame = tid + b"\x00\x00" + length.to_bytes(2, "big") + bytes([unit]) + pdu
    return [frame[:5], frame[5:]] if kind == "correct-split" else [frame]


async def _read_with_reply(reply: tuple[str, int, bytes], table: str, count: int) -> object:
    import asyncio

    from pymodbus.client import AsyncModbusTcpClient

    from drivers.modbus import guarded_close, guarded_connect, guarded_read
    from tests.test_modbus_support import point, tcp_device

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readexactly(12)
            for chunk in _reply(*reply, request):
                writer.write(chunk)
                await writer.drain()
            if reply[0] == "close":
                return
            await reader.read()  # hold the connection until the client closes it
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kind = "bool" if table in ("coil", "discrete_input") else "uint16"
    device = tcp_device("dev-1", port, [point("p", 0, function=table, type=kind)],
                        timeout=0.2)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0,
                                  reconnect_delay=0)
    try:
        await guarded_connect(client, link="fuzz", connect_timeout=1)
        try:
            return await guarded_read(client, device, table, 0, count, link="fuzz")
        except (DeviceError, LinkError) as exc:
            return exc
    finally:
        guarded_close(client, link="fuzz")
        server.close()
        await server.wait_closed()


@budget(25)
@given(modbus_replies(), st.sampled_from(["holding", "input", "coil", "discrete_input"]),
       st.integers(1, 20))
async def test_modbus_any_reply_bytes_become_registers_or_a_device_error(
        reply: tuple[str, int, bytes], table: str, count: int) -> None:
    started = time.monotonic()
    result = await _read_with_reply(reply, table, count)
    event(f"modbus wire: {type(result).__name__}")
    if isinstance(result, list):
        assert len(result) == count
        if table in ("coil", "discrete_input"):
            assert all(isinstance(b, bool) for b in result)
        else:
            assert all(isinstance(w, int) and 0 <= w <= 0xFFFF for w in result)
    else:
        assert isinstance(result, DeviceError | LinkError), repr(result)
        assert_reason(str(result))
    if reply[0] in ("correct", "correct-split"):
        assert isinstance(result, list), result
    assert time.monotonic() - started < 0.2 + DECODE_BOUND


# --------------------------------------------------------------------------- MQTT, end to end

# Payloads the fuzzer found to raise something other than DecodeError before the decoder was
# fixed: Python refuses int('9' * 5000); an integer beyond float range overflowed in scaling.
CRASHERS = [b"9" * 5000, b'{"v": ' + b"9" * 5000 + b"}", b'{"v": ' + b"9" * 400 + b"}",
            b'{"v": 1e400}', b"[" * 100_000, b"\xff\xfe", b""]


@pytest.mark.mosquitto
async def test_the_driver_turns_hostile_payloads_into_bad_readings_and_stays_up(
        mosquitto: Mosquitto, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.mqtt")
    meter = {"id": "meter-1", "driver": "mqtt", "qos": 1, "points": [
        {"name": "plain", "topic": "m/1/plain", "type": "number", "scale": 0.5},
        {"name": "field", "topic": "m/1/json", "path": "v", "type": "number", "scale": 0.5}]}
    driver = only_driver(site_config(mosquitto.port, [meter]), fake_clock)
    sink = Sink()
    async with running(driver, sink) as task:
        for raw in CRASHERS:
            await publish(mosquitto.port, ("m/1/plain", raw), ("m/1/json", raw))
        bad = await sink.wait_for(lambda r: r.quality is Quality.BAD, count=2 * len(CRASHERS))
        await publish(mosquitto.port, ("m/1/plain", b"42"), ("m/1/json", b'{"v": 42}'))
        good = await sink.wait_for(lambda r: r.good, count=2)
        assert not task.done()
        health = driver.health()
    assert all(r.value is None and r.error for r in bad)
    assert {(r.point, r.value) for r in good} == {("plain", 21), ("field", 21)}
    # The link never dropped: no reconnect, no comm-loss for the broker's other devices.
    assert health.counters["connects"] == 1
    assert health.counters["comm_loss"] == 0
    assert health.counters["malformed"] == 2 * len(CRASHERS)
    warnings = [r for r in caplog.records
                if r.name.startswith("drivers.mqtt") and r.levelno == logging.WARNING]
    assert len(warnings) == 2, [w.getMessage() for w in warnings]  # one per point, then DEBUG
