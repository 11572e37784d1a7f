"""``propgw users`` against real user files: every sub-command, its refusals and exit statuses,
the password prompt in a real terminal, and the first-start hint run exactly as logged."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.console import UserStore, first_admin_command, users_path
from tests.console_support import SITE, running_console
from tests.support import Mosquitto
from tests.tmux_support import propgw_command, tmux_pane

MINIMAL = """
site: {{id: u1, name: 测试, gateway_id: gw1}}
{state}
console: {{}}
"""
PASSWORD = "long enough password"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL.format(state=f"state_dir: {tmp_path / 'state'}"), encoding="utf-8")
    return path


def users(site: Path, *argv: str, stdin: str = "") -> int:
    """``propgw users ARGV -c SITE`` with ``stdin`` as standard input."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(["users", argv[0], "-c", str(site), *argv[1:]])
    finally:
        sys.stdin = saved


def store_of(site: Path) -> UserStore:
    path = users_path(load_config(site))
    assert path is not None
    return UserStore(path)


def test_add_passwd_role_list_and_del(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert users(site, "list") == 0
    assert "no users yet" in capsys.readouterr().out
    assert users(site, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD + "\n") == 0
    assert users(site, "add", "wang", "--role", "operator", "--password-stdin",
                 stdin=PASSWORD + "\n") == 0
    assert "added wang (operator)" in capsys.readouterr().out
    with store_of(site) as store:
        assert store.verify("wang", PASSWORD) is not None
        assert store.verify("wang", "wrong password") is None

    assert users(site, "passwd", "wang", "--password-stdin", stdin="another password\r\n") == 0
    assert users(site, "role", "wang", "engineer") == 0
    with store_of(site) as store:
        user = store.verify("wang", "another password")
        assert user is not None and user.role == "engineer"
    capsys.readouterr()

    assert users(site, "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "ROLE", "API", "TOKENS"]
    assert out[1].split() == ["chief", "admin", "-"]
    assert out[2].split() == ["wang", "engineer", "-"]

    assert users(site, "del", "wang") == 0
    captured = capsys.readouterr()
    assert "deleted wang" in captured.out and "within a minute" in captured.err
    with store_of(site) as store:
        assert [u.name for u in store.list()] == ["chief"]
    mode = (users_path(load_config(site)) or Path()).stat().st_mode & 0o777
    assert mode == 0o600, "the user file is the gateway's only"


def test_refusals_exit_1_and_usage_problems_exit_2(site: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert users(site, "passwd", "chief", "--password-stdin", stdin=PASSWORD) == 1
    assert "no user file" in capsys.readouterr().err
    assert users(site, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD) == 0
    capsys.readouterr()

    cases: list[tuple[tuple[str, ...], str, int, str]] = [
        (("del", "chief"), "", 1, "'chief' is the last admin; make someone else admin first"),
        (("role", "chief", "viewer"), "", 1, "last admin"),
        (("add", "chief", "--role", "viewer", "--password-stdin"), PASSWORD, 1,
         "exists already"),
        (("add", "bad name", "--role", "viewer", "--password-stdin"), PASSWORD, 1,
         "1-64 characters"),
        (("passwd", "nobody", "--password-stdin"), PASSWORD, 1, "no user 'nobody'"),
        (("token", "nobody"), "", 1, "no user 'nobody'"),
        (("add", "li", "--role", "viewer", "--password-stdin"), "short\n", 2,
         "at least 8 characters"),
        (("add", "li", "--role", "viewer", "--password-stdin"), "", 2,
         "standard input had no password"),
    ]
    for argv, stdin, status, message in cases:
        assert users(site, *argv, stdin=stdin) == status, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["users", "add", "-c", str(site), "li", "--role", "superuser"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'superuser'" in capsys.readouterr().err
    with store_of(site) as store:
        assert [u.name for u in store.list()] == ["chief"], "nothing half-done"


def test_tokens_are_shown_once_listed_by_label_and_revoked(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users(site, "add", "wang", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    capsys.readouterr()
    assert users(site, "token", "wang", "--label", "laptop") == 0
    captured = capsys.readouterr()
    laptop = captured.out.strip()
    assert re.fullmatch(r"pgw_[A-Za-z0-9_-]{40,}", laptop), "stdout is the token alone"
    assert "shown only this once" in captured.err
    assert users(site, "token", "wang", "--label", "script") == 0
    script = capsys.readouterr().out.strip()
    with store_of(site) as store:
        assert (user := store.token_user(laptop)) is not None and user.role == "operator"

    assert users(site, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["label"] for t in listed[0]["tokens"]] == ["laptop", "script"]
    assert laptop not in json.dumps(listed), "a token is never shown again"

    assert users(site, "revoke", "wang", "--label", "laptop") == 0
    assert "revoked 1 API token(s) of wang labelled 'laptop'" in capsys.readouterr().out
    with store_of(site) as store:
        assert store.token_user(laptop) is None
        assert store.token_user(script) is not None
    assert users(site, "revoke", "wang") == 0
    assert "revoked 1 API token(s)" in capsys.readouterr().out
    with store_of(site) as store:
        assert store.token_user(script) is None


def test_where_the_user_file_is_and_whose_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text(MINIMAL.format(state=""), encoding="utf-8")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert users(nowhere, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD) == 2
    err = capsys.readouterr().err
    assert "set state_dir" in err and "STATE_DIRECTORY=/var/lib/propgw" in err

    # What the gateway logs under systemd (StateDirectory=) is what works in a shell.
    state = tmp_path / "systemd-state"
    config = load_config(nowhere)
    hint = first_admin_command(config, {"STATE_DIRECTORY": str(state)})
    assert hint == f"STATE_DIRECTORY={state} propgw users add -c <site.yaml> <name> --role admin"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    assert users(nowhere, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD) == 0
    assert (state / "users-u1-gw1.sqlite3").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_user_file_of_another_system_user_is_left_alone(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # nobody, like /var/lib/propgw belongs to propgw
    assert users(site, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD) == 2
    err = capsys.readouterr().err
    assert f"the folder of the user file ({state}) belongs to" in err
    assert "sudo -u " in err and "propgw users add" in err
    assert not any(state.iterdir()), "no root-owned file the gateway could not open"


def test_secrets_the_command_does_not_need_may_be_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PROPGW_TEST_PLATFORM_TOKEN", raising=False)
    text = SITE.format(state=tmp_path / "state", port=1883,
                       token="\"${PROPGW_TEST_PLATFORM_TOKEN}\"")
    site = tmp_path / "site.yaml"
    site.write_text(text, encoding="utf-8")
    assert users(site, "add", "chief", "--role", "admin", "--password-stdin",
                 stdin=PASSWORD) == 0, capsys.readouterr().err

    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("console: {port: 0}", "console: {port: -1}"),
                      encoding="utf-8")
    assert users(broken, "list") == 2
    err = capsys.readouterr().err
    assert "console.port" in err and "PROPGW_TEST_PLATFORM_TOKEN" in err, \
        "a real mistake is reported with everything else in the file"


def test_without_a_terminal_the_password_is_not_asked(site: Path) -> None:
    # A new session has no controlling terminal: getpass could only echo, so it is refused.
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "users", "add", "-c", str(site), "chief",
         "--role", "admin"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        start_new_session=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "no terminal to ask for the password; pipe it in with --password-stdin" in \
        proc.stderr


async def test_the_first_start_hint_works_as_logged(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(state=tmp_path / "state", port=mosquitto.port,
                                token="console-status-token-0123"), encoding="utf-8")
    config = load_config(site)
    caplog.set_level(logging.WARNING, logger="gateway.console")
    async with running_console(config, mosquitto.port) as run:
        logged = [r.getMessage() for r in caplog.records if "no users yet" in r.getMessage()]
        assert len(logged) == 1, caplog.text
        match = re.search(r"with: (propgw users add .*?) \(it asks for the password\)",
                          logged[0])
        assert match is not None, logged[0]
        argv = match.group(1).replace("<site.yaml>", str(site)).replace(
            "<name>", "chief").split()
        assert argv[:2] == ["propgw", "users"]
        async with tmux_pane(propgw_command(*argv[1:]), cwd=tmp_path) as pane:
            await pane.wait_for("new password for chief (at least 8 characters):",
                                within=15)
            await pane.keys(PASSWORD, "Enter")
            await pane.wait_for("again:")
            screen = await pane.screen()
            assert PASSWORD not in screen, "the password is not echoed"
            await pane.keys(PASSWORD, "Enter")
            assert await pane.exit_status(within=15) == 0
            assert "added chief (admin)" in await pane.screen()

        browser = await run.client()
        assert (await browser.login("chief", PASSWORD)).status == 200, \
            "the running gateway sees the new admin at once"
        status, site_view = await browser.get("/api/v1/site")
        assert status == 200 and site_view["users_configured"]


async def test_two_different_passwords_change_nothing(site: Path, tmp_path: Path) -> None:
    command = propgw_command("users", "add", "-c", str(site), "chief", "--role", "admin")
    async with tmux_pane(command, cwd=tmp_path) as pane:
        await pane.wait_for("new password for chief", within=15)
        await pane.keys(PASSWORD, "Enter")
        await pane.wait_for("again:")
        await pane.keys(PASSWORD + "x", "Enter")
        assert await pane.exit_status(within=15) == 2
        assert "the two passwords differ; nothing changed" in await pane.screen()
    with store_of(site) as store:
        assert store.list() == []
