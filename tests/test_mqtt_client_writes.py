"""How every MQTT client of the gateway writes its socket (gateway.mqtt_client.coalesce_writes).

Found by the upstream-broker SIGKILL drill: a publish queued just before the broker died made
aiomqtt register a writer for a socket that was closed by the time the registration ran, and
asyncio logged an ``OSError`` traceback (with a reused descriptor number it would have watched
another connection's socket).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest

from gateway.config import BrokerConfig
from gateway.mqtt_client import _close_socket as close_socket
from gateway.mqtt_client import build_client
from tests.support import Mosquitto

pytestmark = pytest.mark.mosquitto


async def _publish_then_lose_the_socket(client: aiomqtt.Client) -> list[dict[str, Any]]:
    """Queue a QoS 1 publish, close the socket in the same loop step (the link lost before the
    write ran), let the loop run its callbacks; what the loop's exception handler received."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with client:
            publish = asyncio.create_task(client.publish("t/x", b"1", qos=1, timeout=0.5))
            await asyncio.sleep(0)  # the publish is queued, its write registered, not yet run
            close_socket(client)
            for _ in range(5):
                await asyncio.sleep(0)
            publish.cancel()
            await asyncio.gather(publish, return_exceptions=True)
    except aiomqtt.MqttError:
        pass  # leaving a client whose socket is gone may complain; not what is measured
    finally:
        loop.set_exception_handler(None)
    return errors


async def test_aiomqtt_alone_watches_a_closed_socket(mosquitto: Mosquitto) -> None:
    """The race this module is about, with aiomqtt's own write path: it does happen."""
    errors = await _publish_then_lose_the_socket(aiomqtt.Client("127.0.0.1", mosquitto.port))
    assert any(isinstance(e.get("exception"), OSError) for e in errors), errors


async def test_the_gateway_client_does_not_write_a_closed_socket(mosquitto: Mosquitto) -> None:
    cfg = BrokerConfig.model_validate({"host": "127.0.0.1", "port": mosquitto.port})
    errors = await _publish_then_lose_the_socket(await build_client(cfg, client_id="w1"))
    assert errors == []


async def test_the_gateway_client_still_delivers_after_writes_that_would_block(
        mosquitto: Mosquitto) -> None:
    """A burst larger than the socket's send buffer: the writer is watched while the socket
    is full, and every message is acknowledged."""
    cfg = BrokerConfig.model_validate({"host": "127.0.0.1", "port": mosquitto.port})
    client = await build_client(cfg, client_id="w2")
    payload = b"x" * 200_000
    async with client:
        async with asyncio.timeout(20):
            await asyncio.gather(*(client.publish(f"t/{i}", payload, qos=1) for i in range(40)))
    assert client._client._out_messages == {}
