"""``propgw alarms list|ack|shelve|unshelve|reset|oos|return|comment`` against a real gateway
(real MQTT devices, real user file, real HTTP): the board as the terminal prints it, every
action, and every way the gateway or the command line can say no."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trustme

from gateway.cli import _parser
from gateway.config import load_config
from gateway.console import UserStore, users_path
from gateway.terminal import run_remote_async
from tests.console_support import SITE, STATUS_TOKEN, Running, add_users, running_console
from tests.support import Mosquitto, free_port

pytestmark = pytest.mark.mosquitto


@dataclass
class Site:
    run: Running
    file: Path
    tokens: dict[str, str]
    tmp: Path

    @property
    def url(self) -> str:
        return self.run.base


def site_text(tmp_path: Path, mqtt_port: int, console: str = "{port: 0}") -> str:
    return SITE.format(state=tmp_path / "state", port=mqtt_port,
                       token=STATUS_TOKEN).replace("console: {port: 0}", f"console: {console}")


@pytest.fixture
async def site(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Site]:
    file = tmp_path / "site.yaml"
    file.write_text(site_text(tmp_path, mosquitto.port), encoding="utf-8")
    config = load_config(file)
    add_users(config)
    path = users_path(config)
    assert path is not None
    with UserStore(path) as store:
        tokens = {name: store.issue_token(name, "cli") for name in ("wang", "li", "zhao")}
    async with running_console(config, mosquitto.port) as run:
        yield Site(run, file, tokens, tmp_path)


async def alarms(*argv: str, token: str | None = None, url: str | None = None
                 ) -> tuple[int, str]:
    """``propgw alarms ARGV`` in this event loop; (exit status, standard output)."""
    extra = [*(["--token", token] if token else []), *(["--url", url] if url else [])]
    args = _parser().parse_args(["alarms", *argv, *extra])
    out = io.StringIO()
    status = await run_remote_async(args, out)
    return status, out.getvalue()


async def test_list_prints_the_board_in_the_sites_language_and_time_zone(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = await alarms("list", token=site.tokens["li"], url=site.url)
    assert status == 0 and out.splitlines()[-1] == "当前无报警"
    await site.run.publish("dev/E1/trapped", "1")
    client = await site.run.client()
    await client.login("li")
    alarm = await site.run.wait_alarm(client, "trapped@E1", "active_unacknowledged")

    status, out = await alarms("list", token=site.tokens["li"], url=site.url)
    assert status == 0, capsys.readouterr().err
    lines = out.splitlines()
    assert lines[0].startswith("propgw · 测试小区 (cs) · ") and lines[0].endswith("CST +0800")
    assert lines[1] == "报警 1 条 · P0 1 · 未确认 1"
    header, row = lines[2].split(), lines[3].split()
    assert header == ["级别", "状态", "发生时间", "持续", "到场倒计时", "升级", "报警编号", "位置",
                      "设备", "内容"]
    since = dt.datetime.fromisoformat(alarm["activated_at"]).astimezone(
        ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")
    assert row[:3] == ["P0", "未确认", since], "the site's time, not this machine's"
    assert re.fullmatch(r"\d+s", row[3])
    assert re.fullmatch(r"0[0-4]:[0-5]\d", row[4]), "counting down to respond_by (5 min)"
    assert row[5:] == ["L1/4", "中控室", "trapped@E1", "1号楼", "3层", "东区", "1号梯",
                       "电梯困人"]

    status, out = await alarms("list", "--lang", "en", token=site.tokens["li"], url=site.url)
    assert "1 alarm(s) · P0 1 · unacknowledged 1" in out
    assert re.search(r"P0\s+UNACK\s+.*L1/4 Control room\s+trapped@E1\s+Bldg 1, floor 3, "
                     r"zone East\s+1号梯\s+passenger trapped", out), out

    status, out = await alarms("list", "--json", token=site.tokens["li"], url=site.url)
    board = json.loads(out)
    assert status == 0 and board["alarms"][0]["alarm_id"] == "trapped@E1"
    assert board["alarms"][0]["work_order"]["escalation_level"] == 1


async def test_every_action_and_the_refusal_reasons(site: Site,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    op, engineer, viewer = site.tokens["wang"], site.tokens["zhao"], site.tokens["li"]
    await site.run.publish("dev/E1/trapped", "1")
    await site.run.publish("dev/W1/wet", "1")
    client = await site.run.client()
    await client.login("li")
    await site.run.wait_alarm(client, "trapped@E1", "active_unacknowledged")
    await site.run.wait_alarm(client, "leak@W1", "active_unacknowledged")

    async def act(*argv: str, token: str = op) -> tuple[int, str, str]:
        status, out = await alarms(*argv, token=token, url=site.url)
        return status, out, capsys.readouterr().err

    assert await act("ack", "trapped@E1", token=viewer) == (
        1, "", "propgw alarms ack: not allowed: this needs the role operator or above; li is "
               "viewer (an admin can change that: propgw users role -c SITE.yaml NAME ROLE)\n")
    assert await act("ack", "trapped@E1", "--comment", "已通知维保") == (
        0, "trapped@E1: acknowledged (state: active_acknowledged)\n", "")
    status, out, err = await act("ack", "trapped@E1", "nope@E9", "leak@W1")
    assert status == 1, "one refusal fails the command; the others are still done"
    assert out == "leak@W1: acknowledged (state: active_acknowledged)\n"
    assert err == ("propgw alarms ack: trapped@E1: refused: already acknowledged\n"
                   "propgw alarms ack: nope@E9: no alarm nope@E9\n")

    status, _, err = await act("shelve", "trapped@E1", "--reason", "测试")
    assert status == 1 and "trapped@E1: refused:" in err and "P0" in err
    status, _, err = await act("shelve", "leak@W1", "--reason", " ")
    assert status == 2 and "--reason must say why" in err
    status, _, err = await act("shelve", "leak@W1", "--reason", "x", "--for", "soon")
    assert status == 2 and "soon" in err
    assert (await act("shelve", "leak@W1", "--reason", "维修中", "--for", "10m"))[:2] == (
        0, "leak@W1: shelved (state: shelved)\n")
    _, body = await client.get("/api/v1/alarms/leak@W1")
    shelf = body["shelved"]
    assert shelf["actor"] == "wang" and shelf["reason"] == "维修中"
    length = dt.datetime.fromisoformat(shelf["until"]) - dt.datetime.fromisoformat(shelf["since"])
    assert length == dt.timedelta(minutes=10)
    assert (await act("unshelve", "leak@W1"))[0] == 0

    status, _, err = await act("oos", "leak@W1", "--reason", "检修")
    assert status == 1 and "needs the role engineer" in err
    assert (await act("oos", "leak@W1", "--reason", "检修", token=engineer))[:2] == (
        0, "leak@W1: taken out of service (state: out_of_service)\n")
    assert (await act("return", "leak@W1", token=engineer))[:2] == (
        0, "leak@W1: returned to service (state: active_acknowledged)\n")

    await site.run.publish("dev/W1/wet", "0")
    await site.run.wait_alarm(client, "leak@W1", "latched")
    assert (await act("reset", "leak@W1", "--reason", "已修复"))[:2] == (
        0, "leak@W1: reset (state: normal)\n")
    status, _, err = await act("reset", "leak@W1")
    assert status == 1 and "refused" in err

    assert (await act("comment", "trapped@E1", "维保已到场"))[:2] == (
        0, "trapped@E1: commented (state: active_acknowledged)\n")
    status, _, err = await act("comment", "trapped@E1", "  ")
    assert status == 2 and "the comment is empty" in err

    _, history = await client.get("/api/v1/history?hours=1&alarm_id=trapped%40E1")
    done = {(e["transition"], e["actor"], e["reason"]) for e in history["events"]}
    assert {("acknowledged", "wang", "已通知维保"), ("comment", "wang", "维保已到场")} <= done, \
        "every action is journaled with the token's user"


async def test_where_the_token_comes_from(site: Site, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PROPGW_TOKEN", raising=False)
    monkeypatch.delenv("PROPGW_URL", raising=False)
    assert (await alarms("list", url=site.url))[0] == 2
    assert "no API token: make one with `propgw users token -c SITE.yaml NAME`" in \
        capsys.readouterr().err

    monkeypatch.setenv("PROPGW_TOKEN", site.tokens["li"])
    monkeypatch.setenv("PROPGW_URL", site.url)
    assert (await alarms("list"))[0] == 0, "both from the environment"

    file = site.tmp / "token"
    file.write_text(site.tokens["wang"] + "\n", encoding="utf-8")
    file.chmod(0o644)
    assert (await alarms("ack", "x@E1", "--token-file", str(file)))[0] == 2
    assert f"--token-file {file} can be read by others (mode 0644); make it yours only: " \
           f"chmod 600 {file}" in capsys.readouterr().err
    file.chmod(0o600)
    status, _ = await alarms("ack", "x@E1", "--token-file", str(file))
    assert status == 1 and "no alarm x@E1" in capsys.readouterr().err, \
        "the file's token (an operator's) beats the environment's (a viewer's)"

    assert (await alarms("list", token="not-a-token"))[0] == 2
    assert "does not hold a propgw API token" in capsys.readouterr().err
    assert (await alarms("list", token="pgw_" + "x" * 43))[0] == 1
    assert "the gateway does not accept this API token" in capsys.readouterr().err

    with UserStore(users_path(load_config(site.file)) or Path()) as store:
        store.delete("zhao")
    monkeypatch.setenv("PROPGW_TOKEN", site.tokens["zhao"])
    assert (await alarms("list"))[0] == 1, "a deleted user's token (not used before, so not " \
                                           "in the gateway's one-minute cache)"
    assert "its user deleted" in capsys.readouterr().err


async def test_where_the_gateway_is(site: Site, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PROPGW_URL", raising=False)
    token = site.tokens["li"]
    port = site.url.rsplit(":", 1)[1]
    wildcard = site.tmp / "wildcard.yaml"
    wildcard.write_text(site_text(site.tmp, 1883, f'{{host: "0.0.0.0", port: {port}}}'),
                        encoding="utf-8")
    assert (await alarms("list", "-c", str(wildcard), token=token))[0] == 0, \
        "0.0.0.0 in the config: connect to 127.0.0.1"

    assert (await alarms("list", "-c", str(site.file), token=token))[0] == 2
    assert "console.port: 0" in capsys.readouterr().err
    off = site.tmp / "off.yaml"
    off.write_text(site_text(site.tmp, 1883).replace("console: {port: 0}\n", ""),
                   encoding="utf-8")
    assert (await alarms("list", "-c", str(off), token=token))[0] == 2
    assert "has no console: section" in capsys.readouterr().err
    assert (await alarms("list", token=token))[0] == 2
    assert "where is the gateway? Pass -c SITE.yaml" in capsys.readouterr().err

    closed = f"http://127.0.0.1:{free_port()}"
    assert (await alarms("list", token=token, url=closed))[0] == 1
    err = capsys.readouterr().err
    assert f"cannot reach the gateway at {closed}" in err and "Traceback" not in err
    assert (await alarms("list", token=token, url="ftp://example"))[0] == 2
    assert "--url wants http://HOST:PORT" in capsys.readouterr().err


async def test_https_pins_the_sites_own_certificate(mosquitto: Mosquitto, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("gateway.example")  # not 127.0.0.1: pinning needs no name
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    port = free_port()
    file = tmp_path / "site.yaml"
    file.write_text(site_text(tmp_path, mosquitto.port, (
        f"{{port: {port}, cert_file: {tmp_path / 'cert.pem'}, "
        f"key_file: {tmp_path / 'key.pem'}}}")), encoding="utf-8")
    config = load_config(file)
    add_users(config)
    with UserStore(users_path(config) or Path()) as store:
        token = store.issue_token("li")
    async with running_console(config, mosquitto.port):
        status, out = await alarms("list", "-c", str(file), token=token)
        assert status == 0 and "当前无报警" in out, capsys.readouterr().err
        url = f"https://127.0.0.1:{port}"
        assert (await alarms("list", token=token, url=url))[0] == 1
        assert "TLS with https://127.0.0.1" in capsys.readouterr().err, \
            "a URL of one's own: the system's CAs, which do not know this one"
        assert (await alarms("list", "--cafile", str(tmp_path / "ca.pem"), token=token,
                             url=f"https://127.0.0.1:{port}"))[0] == 1
        assert "127.0.0.1" in capsys.readouterr().err, "the CA, but not the name"
        other = trustme.CA().issue_cert("gateway.example")
        other.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
        assert (await alarms("list", "-c", str(file), token=token))[0] == 1
        assert "another TLS certificate than the site config's console.cert_file" in \
            capsys.readouterr().err
