"""The console's API, fuzzed from its own OpenAPI document against a real gateway: no answer
is a 5xx and none is dropped, whatever is sent, logged in as an admin (every operation
reachable) and with the CSRF token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.console_support import add_users, console_config, running_console
from tests.openapi_fuzz import fuzz_openapi
from tests.support import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


async def test_no_input_makes_the_console_api_fail(mosquitto: Mosquitto,
                                                   tmp_path: Path) -> None:
    config = console_config(tmp_path, mosquitto.port)
    add_users(config)
    async with running_console(config, mosquitto.port) as run:
        await run.publish("dev/E1/trapped", "1")
        await run.publish("dev/W1/wet", "1")
        admin = await run.client()
        assert (await admin.login("admin")).status == 200
        await run.wait_alarm(admin, "trapped@E1", "active_unacknowledged")
        cookies = {c.key: c.value for c in admin.http.cookie_jar}
        report = await fuzz_openapi(
            run.base, f"{run.base}/api/v1/openapi.json", max_examples=15, time_limit=60,
            headers={"X-CSRF-Token": admin.csrf}, cookies=cookies,
            # Logging out would end the fuzzer's own session half way.
            exclude_paths={"/api/v1/session"})
        report.assert_ok()
        assert len(report.operations) >= 20, report.operations
