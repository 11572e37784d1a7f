"""scripts/install.sh, run for real into a temporary root: a fresh install, the same install
again (nothing may change), an upgrade to a second release and a rollback. Then the files it
wrote: modes, the unit's paths (and ``systemd-analyze verify``), and the shipped mosquitto config
run by a real mosquitto: the account install.sh created gets in, anonymous and wrong passwords
are refused, and it listens on loopback and the LAN address only.

Under ``--root`` the script may not create users or change owners; it prints what it would do,
and the tests check those lines. As root, one more test runs it without ``--root`` in a private
mount namespace (a copy of /etc, empty /srv, /var/lib, /run): the user, the owners, Debian's
own mosquitto.conf reading the password file as the user mosquitto, and propgw runnable by its
user, with nothing left on the machine. The virtualenvs take ~60 s in all: marked slow."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from tests.support import free_port, wait_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install.sh"
PREFIX = "/srv/propgw"          # not the default: every path must follow --prefix
LAN = "127.0.0.2"               # stands in for the Pi's device-LAN address (still loopback)

def _version() -> str:
    found = re.search(r'__version__ = "(.+)"', (REPO / "gateway" / "__init__.py").read_text())
    assert found
    return found[1]


VERSION = _version()

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.timeout(600)]


@dataclass
class Install:
    root: Path
    port: int
    first: str                  # output of each run
    again: str
    upgrade: str
    rollback: str
    tree_after_first: dict[str, str]
    tree_after_again: dict[str, str]
    current_after_upgrade: str
    previous_after_upgrade: str


def _run(root: Path, *args: str) -> str:
    result = subprocess.run([str(SCRIPT), "--root", str(root), *args], capture_output=True,
                            text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _tree(root: Path) -> dict[str, str]:
    """Every file, folder and link under ``root`` with its mode and content hash or target."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                tree[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                tree[key] = f"dir {st.st_mode:o}"
            else:
                tree[key] = f"{st.st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return tree


def _link(root: Path, name: str) -> str:
    return os.readlink(root / PREFIX.lstrip("/") / name)


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("root")
    port = free_port()
    common = ("--prefix", PREFIX)
    first = _run(root, *common, "--lan-address", LAN, "--mqtt-port", str(port))
    tree_first = _tree(root)
    # Without --lan-address/--mqtt-port: the choices of the first run are kept.
    again = _run(root, *common)
    tree_again = _tree(root)
    (root / "var/lib/propgw/journal.sqlite").write_text("state of the first release")
    # Four old releases (only their markers), oldest first: with --keep 3 the oldest goes.
    for age, name in enumerate(["0.0.4", "0.0.3", "0.0.2", "0.0.1"], start=1):
        old = root / PREFIX.lstrip("/") / "releases" / name
        old.mkdir()
        (old / ".propgw-release").write_text(f"release={name}\n")
        os.utime(old, (1_700_000_000 - age * 86400,) * 2)
    upgrade = _run(root, *common, "--release", f"{VERSION}-b")
    current, previous = _link(root, "current"), _link(root, "previous")
    rollback = _run(root, "rollback", *common)
    return Install(root, port, first, again, upgrade, rollback, tree_first, tree_again,
                   current, previous)


def test_a_second_run_changes_nothing_and_says_so(install: Install) -> None:
    assert "create release" in install.first and "create /etc/propgw/site.yaml" in install.first
    assert install.tree_after_again == install.tree_after_first
    changes = [line for line in install.again.splitlines()
               if re.match(r"\[install\] (create|update|switch|remove)", line)]
    assert changes == []
    assert install.again.rstrip().endswith(
        f"nothing to do: release {VERSION} is installed and current, every file is up to date")


def test_what_a_root_install_would_do_to_users_and_owners(install: Install) -> None:
    out = install.first
    assert ("skip (--root): useradd --system --user-group --home-dir /var/lib/propgw "
            "--no-create-home --shell /usr/sbin/nologin --groups dialout propgw") in out
    for owner, path in [("root:propgw", "/etc/propgw"), ("propgw:propgw", "/var/lib/propgw"),
                        ("root:propgw", "/etc/propgw/site.yaml"),
                        ("root:root", "/etc/propgw/propgw.env"),
                        ("root:mosquitto", "/etc/mosquitto/propgw.passwd")]:
        assert f"skip (--root): chown {owner} {path}\n" in out
    assert "skip (--root): systemctl enable propgw && systemctl restart propgw" in out


def test_files_and_modes(install: Install) -> None:
    root = install.root
    modes = {"etc/propgw": 0o750, "etc/propgw/site.yaml": 0o640, "etc/propgw/propgw.env": 0o600,
             "var/lib/propgw": 0o750, "etc/mosquitto/propgw.passwd": 0o640,
             "etc/mosquitto/conf.d/propgw.conf": 0o644,
             "etc/systemd/system/propgw.service": 0o644}
    assert {p: (root / p).stat().st_mode & 0o7777 for p in modes} == modes
    # The example site, unchanged, and the broker password it refers to.
    assert (root / "etc/propgw/site.yaml").read_text() == \
        (REPO / "config/examples/site.yaml").read_text()
    assert "${LOCAL_MQTT_PASSWORD}" in (root / "etc/propgw/site.yaml").read_text()
    assert re.search(r"^LOCAL_MQTT_PASSWORD=\S{20,}$", (root / "etc/propgw/propgw.env")
                     .read_text(), re.MULTILINE)
    release = root / PREFIX.lstrip("/") / "current"
    version = subprocess.run([str(release / "bin" / "propgw"), "--version"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert VERSION in version
    assert (release / "share/doc/propgw/install.md").is_file()
    # The example a user copies from is in the release (the path install.sh prints).
    shown = re.search(r"the example is (\S+)\)", install.again)
    assert shown and (root / shown[1].lstrip("/")).read_text() == \
        (REPO / "config/examples/site.yaml").read_text()



def test_the_installed_release_prints_the_shipped_example_site(install: Install) -> None:
    # A wheel user (the release is a non-editable install) finds the example without
    # knowing where site-packages is.
    propgw = install.root / PREFIX.lstrip("/") / "current/bin/propgw"
    shown = subprocess.run([str(propgw), "example", "site"], capture_output=True, text=True,
                           timeout=60, check=True)
    assert shown.stdout == (REPO / "config/examples/site.yaml").read_text()
    where = subprocess.run([str(propgw), "example", "--path"], capture_output=True, text=True,
                           timeout=60, check=True).stdout.strip()
    assert where.endswith("site-packages/gateway/_bundled_config"), where

def test_the_unit_runs_the_current_release_from_the_prefix(install: Install,
                                                           tmp_path: Path) -> None:
    unit = (install.root / "etc/systemd/system/propgw.service").read_text()
    commands = re.findall(r"^ExecStart(?:Pre)?=(\S+)", unit, re.MULTILINE)
    assert commands == [f"{PREFIX}/current/bin/propgw"] * 2
    assert "/opt/propgw" not in unit
    assert (install.root / PREFIX.lstrip("/") / "current/bin/propgw").exists()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the command exists: point it at the release inside the test root.
    local = tmp_path / "propgw.service"
    local.write_text(unit.replace(f"{PREFIX}/", f"{install.root}{PREFIX}/"))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout and not result.stderr, (
        result.stdout + result.stderr)


def test_upgrade_keeps_config_and_state_and_rollback_switches_back(install: Install) -> None:
    root = install.root
    assert install.current_after_upgrade == f"releases/{VERSION}-b"
    assert install.previous_after_upgrade == f"releases/{VERSION}"
    assert f"switch {PREFIX}/current from {VERSION} to {VERSION}-b" in install.upgrade
    # The state was copied aside before the switch; config and state stayed where they were.
    snapshots = list((root / "var/lib/propgw-snapshots").glob(f"*-before-{VERSION}-b"))
    assert len(snapshots) == 1
    assert (snapshots[0] / "journal.sqlite").read_text() == "state of the first release"
    assert (root / "var/lib/propgw/journal.sqlite").read_text() == "state of the first release"
    assert "unchanged: /etc/propgw/site.yaml" in install.upgrade
    # Rollback: back to the first release, the upgraded one becomes "previous".
    assert _link(root, "current") == f"releases/{VERSION}"
    assert _link(root, "previous") == f"releases/{VERSION}-b"
    assert f"switch {PREFIX}/current from {VERSION}-b to {VERSION}" in install.rollback
    listed = subprocess.run([str(SCRIPT), "releases", "--root", str(root), "--prefix", PREFIX],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert listed.splitlines() == ["0.0.2", "0.0.3", "0.0.4", f"{VERSION} (current)",
                                   f"{VERSION}-b (previous)"]
    # --keep 3 (the default): current, previous and the three newest others stay.
    assert "remove old release 0.0.1" in install.upgrade
    assert not (root / PREFIX.lstrip("/") / "releases" / "0.0.1").exists()


def test_a_changed_checkout_under_the_same_release_name_is_refused(install: Install,
                                                                   tmp_path: Path) -> None:
    # A copy of the checkout with one file changed: same version, other files.
    copy = tmp_path / "checkout"
    copy.mkdir()
    for part in ("pyproject.toml", "README.md", "gateway", "drivers", "simulators", "config",
                 "scripts", "systemd", "mosquitto", "docs"):
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, copy / part)
    (copy / "config/examples/site.yaml").write_text("# changed\n", encoding="utf-8")
    result = subprocess.run([str(copy / "scripts/install.sh"), "--root", str(install.root),
                             "--prefix", PREFIX], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert (f"release {VERSION} is already installed from other files" in result.stderr
            and f"--release {VERSION}-2" in result.stderr)


@pytest.fixture
def broker(install: Install, tmp_path: Path) -> Iterator[str]:
    """The installed conf.d file run by a real mosquitto, included the way Debian's main
    mosquitto.conf includes it; returns the propgw account's password."""
    confd = tmp_path / "conf.d"
    confd.mkdir()
    text = (install.root / "etc/mosquitto/conf.d/propgw.conf").read_text()
    (confd / "propgw.conf").write_text(text.replace(
        "password_file /etc/mosquitto/", f"password_file {install.root}/etc/mosquitto/"))
    log = tmp_path / "mosquitto.log"
    main = tmp_path / "mosquitto.conf"
    # As Debian's main file: persistence on, its location, a log, the conf.d folder. Run as
    # whoever runs the tests (mosquitto started as root would drop to the user "mosquitto").
    main.write_text(f"user {getpass.getuser()}\npersistence true\n"
                    f"persistence_location {tmp_path}/\nlog_dest file {log}\n"
                    f"include_dir {confd}\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(main)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_port(install.port)
        except TimeoutError:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            pytest.fail(f"mosquitto did not start with the installed config: {err.decode()}"
                        f"{log.read_text() if log.exists() else ''}")
        env = (install.root / "etc/propgw/propgw.env").read_text()
        password = re.search(r"^LOCAL_MQTT_PASSWORD=(\S+)$", env, re.MULTILINE)
        assert password
        yield password[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def test_the_device_broker_wants_the_installed_account(install: Install,
                                                              broker: str) -> None:
    port = install.port
    async with aiomqtt.Client("127.0.0.1", port, username="propgw", password=broker,
                              timeout=10) as client:
        await client.subscribe("acs/+/state", qos=1)
        await client.publish("acs/B1-E01/state", b'{"open": true}', qos=1)
        async for message in client.messages:
            assert message.payload == b'{"open": true}'
            break
    for credentials in ({}, {"username": "propgw", "password": "wrong"},
                        {"username": "intruder", "password": broker}):
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
            async with aiomqtt.Client("127.0.0.1", port, timeout=10,
                                      username=credentials.get("username"),
                                      password=credentials.get("password")):
                pass


def test_the_device_broker_listens_on_loopback_and_the_lan_address_only(
        install: Install, broker: str) -> None:
    for address in ("127.0.0.1", LAN):
        with socket.create_connection((address, install.port), timeout=5):
            pass
    # Any other address of the machine: nothing listens there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.3", install.port), timeout=5)
    conf = (install.root / "etc/mosquitto/conf.d/propgw.conf").read_text()
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert f"listener {install.port} 127.0.0.1" in settings
    assert f"listener {install.port} {LAN}" in settings
    assert {"allow_anonymous false", "set_tcp_nodelay true", "max_queued_messages 5000",
            "per_listener_settings false"} <= set(settings)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                          capture_output=True, timeout=10, check=False).returncode == 0


#: Run as root in a private mount namespace: /etc is a copy, /srv, /var/lib and /run are empty
#: tmpfs, so useradd, chown and the real paths happen for real and the machine sees none of it.
_AS_ROOT = r"""
set -eu
mount --bind "$WORK/etc" /etc
for d in /srv /var/lib /run; do mount -t tmpfs tmpfs "$d"; done
"$SCRIPT" --prefix /srv/propgw --python /usr/bin/python3 --lan-address 127.0.0.2 \
  --mqtt-port "$PORT" > "$WORK/first.log" 2>&1 || { cat "$WORK/first.log"; exit 1; }
"$SCRIPT" --prefix /srv/propgw > "$WORK/again.log"
install -d -o mosquitto /var/lib/mosquitto /run/mosquitto /var/log/mosquitto
# Debian's own main file, which includes conf.d; started as root, mosquitto reads the
# password file after dropping to its user "mosquitto".
/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf & broker=$!
trap 'kill $broker' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1
done
set -a; . /etc/propgw/propgw.env; set +a
/srv/propgw/current/bin/python "$WORK/probe.py" "$PORT"
echo "user: $(id propgw)"
stat -c '%n %a %U:%G' /etc/propgw /etc/propgw/site.yaml /etc/propgw/propgw.env /var/lib/propgw \
  /etc/mosquitto/propgw.passwd
runuser -u propgw -- /srv/propgw/current/bin/propgw users list -c /etc/propgw/site.yaml
"""

_PROBE = r"""
import asyncio, os, sys
import aiomqtt

async def main() -> None:
    port, password = int(sys.argv[1]), os.environ["LOCAL_MQTT_PASSWORD"]
    for host, login in [("127.0.0.1", {"username": "propgw", "password": password}),
                        ("127.0.0.2", {"username": "propgw", "password": password}),
                        ("127.0.0.1", {})]:
        try:
            async with aiomqtt.Client(host, port, timeout=5, **login) as client:
                await client.publish("acs/d1/state", b"{}", qos=1)
            print(f"{host} {'propgw' if login else 'anonymous'}: connected")
        except aiomqtt.MqttError as exc:
            print(f"{host} {'propgw' if login else 'anonymous'}: refused ({exc})")

asyncio.run(main())
"""


@pytest.mark.skipif(not _can_unshare(), reason="needs root and a private mount namespace")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists() or not Path("/usr/sbin/mosquitto")
                    .exists(), reason="needs Debian's python3 and mosquitto")
def test_as_root_on_a_real_system_user_owners_and_the_broker(tmp_path: Path) -> None:
    subprocess.run(["cp", "-a", "/etc/.", str(tmp_path / "etc")], check=True, timeout=120)
    (tmp_path / "probe.py").write_text(_PROBE)
    port = free_port()
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", _AS_ROOT],
        env={**os.environ, "WORK": str(tmp_path), "SCRIPT": str(SCRIPT), "PORT": str(port)},
        capture_output=True, text=True, timeout=400, check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    first = (tmp_path / "first.log").read_text()
    assert "create system user propgw (groups: propgw, dialout)" in first
    assert "skip (--root)" not in first
    assert (tmp_path / "again.log").read_text().rstrip().endswith("nothing to do: release "
                                                                 f"{VERSION} is installed and "
                                                                 "current, every file is up to "
                                                                 "date")
    assert re.search(r"^user: uid=\d+\(propgw\) gid=\d+\(propgw\) groups=\d+\(propgw\),"
                     r"\d+\(dialout\)$", out, re.MULTILINE)
    for line in ["/etc/propgw 750 root:propgw", "/etc/propgw/site.yaml 640 root:propgw",
                 "/etc/propgw/propgw.env 600 root:root", "/var/lib/propgw 750 propgw:propgw",
                 "/etc/mosquitto/propgw.passwd 640 root:mosquitto",
                 "127.0.0.1 propgw: connected", "127.0.0.2 propgw: connected",
                 "no users yet"]:
        assert line in out, out
    assert re.search(r"^127\.0\.0\.1 anonymous: refused \(.*[Nn]ot authori[sz]ed\)$", out,
                     re.MULTILINE), out
