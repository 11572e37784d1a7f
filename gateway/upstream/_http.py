"""Delivers the outbox to a platform's REST API: one JSON POST per message.

Each request carries ``Idempotency-Key: <key>`` (work orders: ``<id>:<seq>``), so the platform
can de-duplicate the re-sends that at-least-once delivery implies. Messages go one at a time in
the outbox's order (life-safety first), so a retried message is never overtaken.

Outcomes, by response:

* 2xx: delivered.
* 5xx, 408, 425, 429, timeouts and network errors: retried after a capped, jittered back-off
  (``Retry-After`` is honoured up to the cap); first failure at WARNING, retries at DEBUG,
  recovery at INFO.
* any other 4xx: the platform will never accept this message as it is, so it is **parked**:
  kept in the outbox, logged at ERROR, counted in the outbox health, and no longer retried
  (:meth:`gateway.outbox.Outbox.retry_parked` queues it again once the cause is fixed).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

import aiohttp

from gateway import __version__
from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import HttpTlsConfig, HttpUpstreamConfig
from gateway.outbox import DeliveryProgress, Envelope, Outbox

__all__ = ["HttpPublisher"]

log = logging.getLogger(__name__)

TARGET = "http"
_TRANSIENT_4XX = frozenset({408, 425, 429})
_BODY_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # delivered | retry | park
    reason: str = ""
    retry_after: float | None = None


class HttpPublisher:
    """POSTs work orders (and optionally alarms) to the platform.

    Args:
        cfg: ``upstream.http``.
        clock: For the retry back-off.
        outbox: Where the messages wait (target ``"http"``).
    """

    def __init__(self, cfg: HttpUpstreamConfig, clock: Clock, outbox: Outbox) -> None:
        self._cfg = cfg
        self._clock = clock
        self._outbox = outbox
        self._urls = {"work-orders": cfg.url}
        if cfg.alarms_url is not None:
            self._urls["alarms"] = cfg.alarms_url
        if cfg.telemetry_url is not None:
            self._urls["telemetry"] = cfg.telemetry_url
        self._backoff = Backoff(base=cfg.retry.initial, cap=cfg.retry.max,
                                jitter=cfg.retry.jitter)
        self.retries = 0
        #: What the health model reads: last attempt, delivery and back-off.
        self.progress = DeliveryProgress()

    @property
    def channels(self) -> frozenset[str]:
        """Outbox channels this publisher takes."""
        return frozenset(self._urls)

    @property
    def pending(self) -> int:
        return self._outbox.pending(TARGET)

    @property
    def sent(self) -> int:
        """Messages the platform has accepted (2xx) since start."""
        return self.progress.sent

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed, until one succeeds."""
        return self.progress.last_error

    async def run(self) -> None:
        """Deliver until cancelled."""
        self.progress.attempt(self._clock.monotonic())
        context = await asyncio.to_thread(_ssl_context, self._cfg.tls)
        if not self._cfg.tls.verify:
            log.warning("upstream http: TLS certificate verification is OFF for %s",
                        self._cfg.url)
        timeouts = self._cfg.timeouts
        headers = {"Content-Type": "application/json", "User-Agent": f"propgw/{__version__}"}
        if self._cfg.token is not None:
            headers["Authorization"] = f"Bearer {self._cfg.token.get_secret_value()}"
        headers.update({k: v.get_secret_value() for k, v in self._cfg.headers.items()})
        async with aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect,
                                              sock_read=timeouts.read),
                connector=aiohttp.TCPConnector(ssl=context, limit=4)) as session:
            failing = False
            while True:
                env = await self._outbox.next(TARGET)
                self.progress.attempt(self._clock.monotonic())
                outcome = await self._post(session, env)
                if outcome.kind == "delivered":
                    self._outbox.delivered(TARGET, env)
                    self.progress.delivered(self._clock.monotonic())
                    self._backoff.reset()
                    if failing:
                        log.info("upstream http: %s accepts messages again", self._cfg.url)
                    failing = False
                elif outcome.kind == "park":
                    self._outbox.park(TARGET, env, outcome.reason)
                else:
                    self.retries += 1
                    self.progress.last_error = outcome.reason
                    delay = self._backoff.next_delay()
                    if outcome.retry_after is not None:
                        delay = min(max(delay, outcome.retry_after), self._cfg.retry.max)
                    level = logging.DEBUG if failing else logging.WARNING
                    log.log(level, "upstream http: %s not delivered (%s); retrying in %.1fs",
                            env.key, outcome.reason, delay)
                    failing = True
                    self.progress.waiting_until = self._clock.monotonic() + delay
                    await self._clock.sleep(delay)

    async def _post(self, session: aiohttp.ClientSession, env: Envelope) -> _Outcome:
        url = self._urls[env.channel.split("/", 1)[0]]  # telemetry/<device>: one URL
        try:
            async with asyncio.timeout(self._cfg.timeouts.total):
                async with session.post(url, data=env.payload,
                                        headers={"Idempotency-Key": env.key}) as response:
                    status = response.status
                    if 200 <= status < 300:
                        return _Outcome("delivered")
                    body = (await response.text(errors="replace"))[:_BODY_EXCERPT]
                    retry_after = _seconds(response.headers.get("Retry-After"))
        except TimeoutError:
            return _Outcome("retry", f"no answer within {self._cfg.timeouts.total:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return _Outcome("retry", f"{type(exc).__name__}: {exc}")
        reason = f"HTTP {status}: {body.strip()}"
        if status >= 500 or status in _TRANSIENT_4XX:
            return _Outcome("retry", reason, retry_after)
        return _Outcome("park", reason)


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not worth the parsing here)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _ssl_context(tls: HttpTlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
