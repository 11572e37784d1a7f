"""An in-process MQTT broker (amqtt) so ``propgw demo`` needs nothing else running.

Production points at mosquitto on the Pi and at the platform's broker; this exists for demos
and first steps only, so amqtt is an optional extra (``pip install 'propgw[demo]'``),
imported only when a broker is started.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

__all__ = ["BrokerUnavailable", "EmbeddedBroker", "require_embedded_broker"]

INSTALL_HINT = ("the embedded MQTT broker needs the demo extra: pip install 'propgw[demo]' "
                "(scripts/demo.sh installs it), or give --broker mqtt://HOST:PORT")


class BrokerUnavailable(RuntimeError):
    """amqtt is not installed; the message says how to install it."""


def require_embedded_broker() -> None:
    """Raise :class:`BrokerUnavailable` unless amqtt can be imported."""
    try:
        import amqtt.broker  # noqa: F401, PLC0415 - the optional extra, checked on demand
    except ImportError:
        raise BrokerUnavailable(INSTALL_HINT) from None


class EmbeddedBroker:
    """amqtt broker on ``host:port`` (anonymous, plain TCP), as an async context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._broker: Any = None
        # amqtt logs every connection at INFO; keep the demo's output readable.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }
        require_embedded_broker()
        from amqtt.broker import Broker  # noqa: PLC0415 - the optional extra

        self._broker = Broker(config)
        await self._broker.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
