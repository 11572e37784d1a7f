"""The OpenAPI fuzzer (tests/openapi_fuzz.py) proven on tiny aiohttp-pydantic apps on 127.0.0.1,
built the way the web console's API will be: views whose signatures make the spec, a session
cookie and a CSRF header, the spec served at /api/v1/openapi.json.

A sound API passes; a handler that crashes on some input (a 500) and one that hangs up without
an answer are both caught, each with a curl command that replays it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import aiohttp
import pytest
from aiohttp import web
from aiohttp_pydantic import PydanticView
from aiohttp_pydantic.oas.typing import r200, r201, r400, r404
from aiohttp_pydantic.oas.view import generate_oas
from pydantic import BaseModel, Field

from tests.openapi_fuzz import fuzz_openapi
from tests.support import free_port

SESSION = {"propgw_session": "s3cr3t-session"}
CSRF = {"X-CSRF-Token": "csrf-0123456789"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Ack(BaseModel):
    operator: Annotated[str, Field(min_length=1, max_length=40)]
    note: Annotated[str, Field(max_length=200)] = ""


class Alarm(BaseModel):
    id: int
    title: str
    acked_by: str | None = None


ALARMS = {1: Alarm(id=1, title="3 号梯困人"), 2: Alarm(id=2, title="B1 烟感报警")}


class AlarmListView(PydanticView):
    async def get(self, limit: Annotated[int, Field(ge=1, le=100)] = 20,
                  active: bool = True) -> r200[list[Alarm]]:
        """Alarms, newest first."""
        alarms = sorted(ALARMS.values(), key=lambda a: -a.id)[:limit]
        return web.json_response([a.model_dump() for a in alarms if active or a.acked_by])


class AlarmView(PydanticView):
    async def get(self, alarm_id: int, /) -> r200[Alarm] | r404:
        """One alarm."""
        alarm = ALARMS.get(alarm_id)
        if alarm is None:
            raise web.HTTPNotFound(text='{"error": "no such alarm"}', content_type="application/json")
        return web.json_response(alarm.model_dump())

    async def post(self, alarm_id: int, /, ack: Ack) -> r201[Alarm] | r400 | r404:
        """Acknowledge an alarm (answers with the alarm; the stand-in keeps no state)."""
        alarm = ALARMS.get(alarm_id)
        if alarm is None:
            raise web.HTTPNotFound(text='{"error": "no such alarm"}', content_type="application/json")
        return web.json_response(alarm.model_copy(update={"acked_by": ack.operator}).model_dump(),
                                 status=201)


class DivideView(PydanticView):
    async def get(self, count: int) -> r200[int]:
        """A deliberate bug: count=0 divides by zero, an unhandled exception, so a 500."""
        return web.json_response(1000 // count)


class HangUpView(PydanticView):
    async def get(self, wait: bool = False) -> r200[int]:
        """A deliberate bug: the connection is dropped without an answer."""
        assert self.request.transport is not None
        self.request.transport.abort()
        return web.json_response(0)


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The console's rule: a session cookie, and a CSRF header on anything that changes state."""
    if request.path != "/api/v1/openapi.json":
        if request.cookies.get("propgw_session") != SESSION["propgw_session"]:
            raise web.HTTPUnauthorized(text='{"error": "log in"}', content_type="application/json")
        if request.method != "GET" and request.headers.get("X-CSRF-Token") != CSRF["X-CSRF-Token"]:
            raise web.HTTPForbidden(text='{"error": "csrf"}', content_type="application/json")
    return await handler(request)


@web.middleware
async def refuse_undecodable_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp-pydantic 2.6 turns a body that is not valid text into a 500 (it catches
    JSONDecodeError, not the UnicodeDecodeError or unknown-charset LookupError of reading the
    text), so the app refuses such a body before a view sees it."""
    if request.body_exists:
        raw = await request.read()  # kept by aiohttp: the view reads it again
        try:
            raw.decode(request.charset or "utf-8")
        except (UnicodeDecodeError, LookupError):
            raise web.HTTPBadRequest(text='{"error": "the body is not text in its charset"}',
                                     content_type="application/json") from None
    return await handler(request)


def console_like_app(*views: tuple[str, type[PydanticView]], guarded: bool = True) -> web.Application:
    middlewares = [refuse_undecodable_bodies, require_session] if guarded else [require_session]
    app = web.Application(middlewares=middlewares)
    for path, view in views:
        app.router.add_view(path, view)
    spec = generate_oas([app], title_spec="stand-in console API", version_spec="0")

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/api/v1/openapi.json", openapi)
    return app


SOUND = (("/api/v1/alarms", AlarmListView), ("/api/v1/alarms/{alarm_id}", AlarmView))


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_sound_api_passes_and_every_operation_is_reached_logged_in() -> None:
    async with serving(console_like_app(*SOUND)) as base:
        started = time.monotonic()
        report = await fuzz_openapi(base, f"{base}/api/v1/openapi.json", max_examples=30,
                                    time_limit=20, cookies=SESSION, headers=CSRF)
        elapsed = time.monotonic() - started
    report.assert_ok()
    assert sorted(report.operations) == [
        "GET /api/v1/alarms", "GET /api/v1/alarms/{alarm_id}", "POST /api/v1/alarms/{alarm_id}"]
    assert not report.timed_out and elapsed < 20
    # The session and the CSRF header went along: valid requests got in, and a valid
    # acknowledgement of an existing alarm was made; invalid ones were refused with a 4xx.
    assert report.statuses["GET /api/v1/alarms (positive)"][200] > 0
    assert report.statuses["POST /api/v1/alarms/{alarm_id} (positive)"][401] == 0
    assert report.statuses["POST /api/v1/alarms/{alarm_id} (positive)"][403] == 0
    negative = report.statuses["POST /api/v1/alarms/{alarm_id} (negative)"]
    assert negative and all(400 <= status < 500 for status in negative)


async def test_a_crash_and_a_hang_up_are_caught_with_a_curl_command() -> None:
    app = console_like_app(*SOUND, ("/api/v1/divide", DivideView), ("/api/v1/hangup", HangUpView))
    async with serving(app) as base:
        report = await fuzz_openapi(base, f"{base}/api/v1/openapi.json", max_examples=30,
                                    time_limit=20, cookies=SESSION, headers=CSRF)
    failed = {problem.operation: problem for problem in report.problems}
    assert sorted(failed) == ["GET /api/v1/divide", "GET /api/v1/hangup"], report.problems
    assert failed["GET /api/v1/divide"].what.startswith("HTTP 500")
    assert "count=0" in failed["GET /api/v1/divide"].curl
    assert failed["GET /api/v1/hangup"].what.startswith("no answer: ConnectionError")
    assert f"{base}/api/v1/hangup" in failed["GET /api/v1/hangup"].curl
    with pytest.raises(AssertionError, match="the server failed on fuzzed input"):
        report.assert_ok()


async def test_without_a_session_nothing_is_reached_and_that_fails() -> None:
    async with serving(console_like_app(*SOUND)) as base:
        report = await fuzz_openapi(base, f"{base}/api/v1/openapi.json", max_examples=5,
                                    time_limit=10)
    assert set(report.statuses["GET /api/v1/alarms (positive)"]) == {401}
    with pytest.raises(AssertionError, match="no valid request was accepted"):
        report.assert_ok()


async def test_aiohttp_pydantic_answers_a_body_that_is_not_text_with_a_500_unless_refused() -> None:
    """Why console_like_app has refuse_undecodable_bodies (the fuzzer found this)."""
    for guarded, expected in ((False, 500), (True, 400)):
        async with serving(console_like_app(*SOUND, guarded=guarded)) as base, \
                aiohttp.ClientSession(cookies=SESSION, headers=CSRF) as http:
            for body, content_type in ((b'{"operator": "\xff"}', "application/json"),
                                       (b'{"operator": "x"}', "application/json; charset=nope")):
                async with http.post(f"{base}/api/v1/alarms/1", data=body,
                                     headers={"Content-Type": content_type}) as response:
                    assert response.status == expected, (guarded, body, content_type)
