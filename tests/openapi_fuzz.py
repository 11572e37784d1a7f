"""Fuzzing a running HTTP API from its OpenAPI spec: no input may get a 5xx or no answer.

schemathesis (4.x) turns each operation of the spec into a hypothesis strategy of requests; this
module sends them to the live server and collects every 5xx, reset connection and timeout, with
a curl command that replays it. Both kinds of input are sent: requests that match the spec
(``positive``: the server must handle them) and requests that break it (``negative``: the server
must refuse them with a 4xx, never crash).

The examples are bounded per operation and the run by a time limit, so a fuzz test fits the
suite's per-test timeout. Under the long fuzz run (``scripts/fuzz.sh``) both grow by
``PROPGW_FUZZ_FACTOR`` like the other fuzz tests (tests/fuzz_support.py); the normal suite is
derandomized, so every run sends the same requests.

The fuzzer speaks blocking HTTP (``requests``). :func:`fuzz_openapi` runs it in a worker thread,
so a server in the test's own event loop keeps serving; :func:`fuzz_openapi_blocking` is for a
server in another process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from tests.fuzz_support import FACTOR

__all__ = ["FuzzReport", "Problem", "fuzz_openapi", "fuzz_openapi_blocking"]

#: Answers that mean the request never got past authentication.
REFUSED = frozenset({401, 403})
Case = schemathesis.Case[Any]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
#: What the fuzzer counts as the server failing to answer (as opposed to a 5xx answer).
NO_ANSWER = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
             requests.exceptions.ContentDecodingError)


@dataclass(frozen=True)
class Problem:
    """One input the server failed on: the first for its operation and kind of input."""

    operation: str
    mode: str
    what: str
    curl: str

    def __str__(self) -> str:
        return f"{self.operation} ({self.mode} input): {self.what}\n    {self.curl}"


@dataclass
class FuzzReport:
    """What one fuzz run sent and what failed."""

    #: Operations fuzzed, as ``METHOD /path``.
    operations: list[str] = field(default_factory=list)
    #: The status codes of the answers, per ``METHOD /path (mode)``.
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Operations the spec describes so badly that no request can be made from them.
    spec_errors: list[str] = field(default_factory=list)
    #: Generated requests the HTTP client could not send (e.g. a header value it refuses); the
    #: server never saw them. One message per operation and mode.
    unsendable: dict[str, str] = field(default_factory=dict)
    #: The time limit ended the run before every example was sent.
    timed_out: bool = False
    seconds: float = 0.0

    def assert_ok(self) -> None:
        """Fail on any 5xx or missing answer, and unless every operation accepted some valid
        request (answered other than 401/403: a fuzz run that never logged in tests nothing)."""
        assert not self.spec_errors, f"the OpenAPI spec is broken: {self.spec_errors}"
        assert self.operations, "the OpenAPI spec lists no operations to fuzz"
        assert not self.problems, "the server failed on fuzzed input:\n" + "\n".join(
            str(p) for p in self.problems)
        unreached = [op for op in self.operations if not set(
            self.statuses.get(f"{op} ({GenerationMode.POSITIVE.value})", ())) - REFUSED]
        assert not unreached, (
            f"no valid request was accepted by {unreached}: {self._summary(unreached)}")

    def _summary(self, operations: list[str]) -> str:
        keys = [f"{op} ({GenerationMode.POSITIVE.value})" for op in operations]
        return "; ".join(f"{key}: answers {dict(self.statuses.get(key, {}))}, unsendable "
                         f"{self.unsendable.get(key)}" for key in keys) + (
            " (the time limit ended the run)" if self.timed_out else "")


async def fuzz_openapi(
        base_url: str, openapi_url: str, *, max_examples: int = 25, time_limit: float = 20.0,
        headers: Mapping[str, str] | None = None, cookies: Mapping[str, str] | None = None,
        exclude_paths: Collection[str] = (), request_timeout: float = 5.0) -> FuzzReport:
    """Fuzz every operation of the spec at ``openapi_url`` against ``base_url``.

    ``max_examples`` per operation and kind of input, ``time_limit`` seconds for the whole run
    (both times ``PROPGW_FUZZ_FACTOR`` in the long fuzz run). ``headers`` and ``cookies`` go with
    every request, e.g. a session. ``exclude_paths`` are left out, e.g. an event stream that
    never ends. Call :meth:`FuzzReport.assert_ok` on the result.
    """
    return await asyncio.to_thread(
        fuzz_openapi_blocking, base_url, openapi_url, max_examples=max_examples,
        time_limit=time_limit, headers=headers, cookies=cookies, exclude_paths=exclude_paths,
        request_timeout=request_timeout)


def fuzz_openapi_blocking(
        base_url: str, openapi_url: str, *, max_examples: int = 25, time_limit: float = 20.0,
        headers: Mapping[str, str] | None = None, cookies: Mapping[str, str] | None = None,
        exclude_paths: Collection[str] = (), request_timeout: float = 5.0) -> FuzzReport:
    """:func:`fuzz_openapi` for a server outside this process's event loop (blocks)."""
    started = time.monotonic()
    deadline = started + time_limit * FACTOR
    spec = schemathesis.openapi.from_url(openapi_url, config=schemathesis.Config(),
                                         headers=dict(headers or {}), cookies=dict(cookies or {}),
                                         timeout=request_timeout)
    report = FuzzReport()
    with requests.Session() as session:
        run = _Run(report, session, base_url, dict(headers or {}), dict(cookies or {}),
                   request_timeout, deadline)
        for result in spec.get_all_operations():
            if isinstance(result, Err):
                report.spec_errors.append(str(result.err()))
                continue
            operation = result.ok()
            if operation.path in exclude_paths:
                continue
            report.operations.append(operation.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run.fuzz(operation, mode, max_examples * FACTOR)
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Run:
    report: FuzzReport
    session: requests.Session
    base_url: str
    headers: dict[str, str]
    cookies: dict[str, str]
    request_timeout: float
    deadline: float

    def fuzz(self, operation: Operation, mode: GenerationMode,
             examples: int) -> None:
        key = f"{operation.label} ({mode.value})"
        self.report.statuses[key] = Counter()
        failed = False

        # Failures are collected, not raised: no shrinking (each costs requests), and every
        # operation is tried even when an early one fails.
        @settings(max_examples=examples, deadline=None, phases=[Phase.explicit, Phase.generate],
                  database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case: Case) -> None:
            nonlocal failed
            if failed:
                return
            if time.monotonic() > self.deadline:
                self.report.timed_out = True
                return
            problem = self._send(case, key)
            if problem is not None:
                failed = True
                self.report.problems.append(Problem(operation.label, mode.value, problem,
                                                    self._curl(case)))

        send()

    def _send(self, case: Case, key: str) -> str | None:
        """Send one case; what went wrong on the server's side, if anything."""
        try:
            response = case.call(base_url=self.base_url, session=self.session,
                                 headers=self.headers, cookies=self.cookies,
                                 timeout=self.request_timeout)
        except NO_ANSWER as exc:
            return f"no answer: {type(exc).__name__}: {exc}"
        except Exception as exc:
            self.report.unsendable.setdefault(key, f"{type(exc).__name__}: {exc}")
            return None
        self.report.statuses[key][response.status_code] += 1
        if response.status_code >= 500:
            body = response.text[:200].replace("\n", " ")
            return f"HTTP {response.status_code}: {body}"
        return None

    def _curl(self, case: Case) -> str:
        try:
            return case.as_curl_command(headers=self.headers, base_url=self.base_url)
        except Exception as exc:  # a case curl cannot express still deserves its report
            return f"(no curl command: {exc}) {case.method} {case.formatted_path}"
