"""Talking to a running gateway's console API with an API token: where, with what, and what
its refusals mean to the person at the terminal.

* **Where**: ``--url``, else ``$PROPGW_URL``, else the site config's ``console.host`` and
  ``port`` (a wildcard address means this machine).
* **Token**: ``--token``, else ``--token-file`` (must be readable by its owner only), else
  ``$PROPGW_TOKEN``. A token on the command line shows in ``ps``; the other two do not.
* **TLS**: with ``--cafile``, that CA; else, when the URL comes from the site config and its
  certificate file can be read, that exact certificate is pinned (its SHA-256), which also works
  for a self-signed one and for ``127.0.0.1`` (not a name in the certificate); else the system's
  CAs.
* **Errors** become :class:`ApiError` with a sentence for a person: the lifecycle's refusal
  reason (409), a token the gateway does not know (401), a role too low and how to get another
  (403), a gateway that does not answer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import ssl
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from gateway.terminal._site import SiteProblem, console_url, load_site

__all__ = ["TOKEN_ENV", "URL_ENV", "ApiClient", "ApiError", "Connection", "SseEvent",
           "connection_from", "parse_sse", "site_zone"]

TOKEN_ENV = "PROPGW_TOKEN"
URL_ENV = "PROPGW_URL"
_TOKEN_PREFIX = "pgw_"
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
#: The feed sends a comment every 15 s when idle; silence for this long means a dead link.
_FEED_SILENCE = 40.0


class ApiError(Exception):
    """The gateway refused, or could not be asked; ``status`` 0 when it did not answer.

    Attributes:
        status: The HTTP status (0: no answer).
        body: The decoded answer, if any.
    """

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Connection:
    """How to reach the gateway's API."""

    url: str
    token: str
    ssl: ssl.SSLContext | aiohttp.Fingerprint | None = None
    timeout: float = 10.0
    #: The site config given with ``-c``, for messages that suggest a command.
    config: Path | None = None


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event."""

    id: str | None
    kind: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


async def site_zone(client: ApiClient) -> tuple[dict[str, Any], ZoneInfo]:
    """The site (``GET /api/v1/site``: name, time zone) and its time zone; UTC if unknown here.

    Raises:
        ApiError: no answer.
    """
    site = await client.get("/api/v1/site")
    if not isinstance(site, dict):
        raise ApiError(0, f"{client.conn.url} does not look like a propgw console")
    try:
        tz = ZoneInfo(str(site.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return site, tz


def connection_from(args: argparse.Namespace) -> Connection:
    """The connection the command line, the environment and the site config ask for.

    Raises:
        SiteProblem: something is missing or unusable; the message says what to do (exit 2).
        ConfigError: the site config has a mistake.
    """
    config_path: Path | None = args.config
    pinned: aiohttp.Fingerprint | None = None
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        if config_path is None:
            raise SiteProblem(f"where is the gateway? Pass -c SITE.yaml (its console section "
                              f"says), --url http://HOST:PORT, or set {URL_ENV}")
        config = load_site(config_path)
        url = console_url(config, config_path)
        assert config.console is not None
        if config.console.cert_file is not None and args.cafile is None:
            pinned = _pin(config.console.cert_file)
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SiteProblem(f"--url wants http://HOST:PORT or https://HOST:PORT, got {url!r}")
    tls: ssl.SSLContext | aiohttp.Fingerprint | None = pinned
    if args.cafile is not None:
        try:
            tls = ssl.create_default_context(cafile=str(args.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise SiteProblem(f"--cafile {args.cafile}: cannot load it: {exc}") from None
    return Connection(url=url, token=_token(args, config_path), ssl=tls,
                      timeout=args.timeout, config=config_path)


class ApiClient:
    """The console API over one HTTP session; use as an async context manager.

    Args:
        conn: Where and how.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.conn.token}",
                     "User-Agent": "propgw-cli"},
            timeout=aiohttp.ClientTimeout(total=self.conn.timeout))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def get(self, path: str) -> Any:
        """GET ``path`` (``/api/v1/...``) and decode its JSON.

        Raises:
            ApiError: any answer but 2xx, or none.
        """
        return await self._call("GET", path, None)

    async def post(self, path: str, body: dict[str, Any], *,
                   headers: dict[str, str] | None = None) -> Any:
        """POST a JSON body and decode the JSON answer.

        Raises:
            ApiError: any answer but 2xx, or none.
        """
        return await self._call("POST", path, body, headers)

    async def events(self, last_id: str | None = None, *,
                     opened: Callable[[], None] | None = None) -> AsyncIterator[SseEvent]:
        """The live feed from ``last_id`` on, until the gateway ends it (after a ``resync``)
        or the link breaks; ``opened`` is called once the gateway has accepted it.

        Raises:
            ApiError: the feed could not be opened, or went silent or broke.
        """
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        # No overall deadline for a stream; each read has one (the gateway sends a comment
        # every 15 s when nothing happens).
        timeout = aiohttp.ClientTimeout(total=None, connect=self.conn.timeout,
                                        sock_read=_FEED_SILENCE)
        async with self._errors("/api/v1/events", silence=_FEED_SILENCE), self._session().get(
                self.conn.url + "/api/v1/events", headers=headers, timeout=timeout,
                ssl=self._ssl) as response:
            await self._check(response)
            if opened is not None:
                opened()
            async for event in parse_sse(_lines(response)):
                yield event

    # -- helpers

    @property
    def _ssl(self) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
        return self.conn.ssl if self.conn.ssl is not None else True

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("ApiClient is used outside `async with`")
        return self._http

    async def _call(self, method: str, path: str, body: dict[str, Any] | None,
                    headers: dict[str, str] | None = None) -> Any:
        async with self._errors(path), self._session().request(
                method, self.conn.url + path, json=body, headers=headers,
                ssl=self._ssl) as response:
            await self._check(response)
            return await response.json(content_type=None)

    @contextlib.asynccontextmanager
    async def _errors(self, path: str, *, silence: float | None = None
                      ) -> AsyncIterator[None]:
        url = self.conn.url
        try:
            yield
        except ApiError:
            raise
        except aiohttp.ServerFingerprintMismatch:
            raise ApiError(0, f"{url} answered with another TLS certificate than the site "
                              f"config's console.cert_file; is that file the one the gateway "
                              f"serves? (--cafile FILE trusts a CA instead)") from None
        except aiohttp.ClientSSLError as exc:
            raise ApiError(0, f"TLS with {url} failed: {exc}; pass --cafile with the CA "
                              f"(or the certificate) the gateway uses") from None
        except aiohttp.ClientConnectorError as exc:
            raise ApiError(0, f"cannot reach the gateway at {url}: {exc.strerror or exc} "
                              f"(is it running, with its console on? systemctl status "
                              f"propgw)") from None
        except TimeoutError:
            waited = self.conn.timeout if silence is None else silence
            raise ApiError(0, f"no answer from {url} within {waited:g} s ({path})") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise ApiError(0, f"{url} closed the connection (is the gateway "
                              f"restarting?)") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise ApiError(0, f"{url}{path}: {type(exc).__name__}: {exc}") from None

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        if response.status < 300:
            return
        text = await response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        detail = _error_text(body) or response.reason or ""
        if response.status == 401:
            where = f" -c {self.conn.config}" if self.conn.config else ""
            raise ApiError(401, f"the gateway does not accept this API token (mistyped, "
                                f"revoked, or its user deleted); make a new one with: propgw "
                                f"users token{where} NAME", body)
        if response.status == 403:
            site = self.conn.config or "SITE.yaml"
            raise ApiError(403, f"not allowed: {detail} (an admin can change that: propgw "
                                f"users role -c {site} NAME ROLE)", body)
        raise ApiError(response.status, detail or f"HTTP {response.status}", body)


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Server-sent events from the stream's lines (without their line ends), as the HTML
    standard parses them: ``data`` lines joined, comments and unknown fields ignored, and an
    event dispatched at each blank line that follows data."""
    kind, last_id = "", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(last_id, kind or "message", "\n".join(data))
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            kind = value
        elif field == "id" and "\0" not in value:
            last_id = value


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    async for raw in response.content:
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    if isinstance(body, list):  # aiohttp-pydantic's validation errors
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', e)}"
                         if isinstance(e, dict) else str(e) for e in body)
    return str(body)[:200] if body else ""


def _token(args: argparse.Namespace, config: Path | None) -> str:
    if args.token:
        token, source = str(args.token).strip(), "--token"
    elif args.token_file is not None:
        token, source = _read_token_file(args.token_file), str(args.token_file)
    elif os.environ.get(TOKEN_ENV):
        token, source = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        site = str(config) if config is not None else "SITE.yaml"
        raise SiteProblem(f"no API token: make one with `propgw users token -c {site} NAME`, "
                          f"then set {TOKEN_ENV} or pass --token-file FILE")
    if not token.startswith(_TOKEN_PREFIX) or not token.isprintable() or " " in token:
        raise SiteProblem(f"{source} does not hold a propgw API token (one line starting "
                          f"with {_TOKEN_PREFIX}, from `propgw users token`)")
    return token


def _read_token_file(path: Path) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SiteProblem(f"--token-file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SiteProblem(f"--token-file {path} can be read by others (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}); make it yours only: "
                              f"chmod 600 {path}")
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteProblem(f"--token-file {path}: cannot read it: {exc}") from None


def _pin(cert_file: Path) -> aiohttp.Fingerprint | None:
    """The SHA-256 pin of the server certificate (the first in the file); None when this
    user cannot read it (the system's CAs are used then)."""
    try:
        match = _PEM_CERT.search(cert_file.read_bytes())
    except OSError:
        return None
    if match is None:
        return None
    der = ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))
    return aiohttp.Fingerprint(hashlib.sha256(der).digest())
