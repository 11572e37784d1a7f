#!/usr/bin/env bash
# Installs propgw as a service on Raspberry Pi OS 12 / Debian 12 (docs/install.md).
#
#   sudo scripts/install.sh [--lan-address 192.168.10.2] [--wheel propgw-X.whl]   install, upgrade
#   sudo scripts/install.sh rollback [RELEASE]                   switch back to the previous release
#   scripts/install.sh releases                                  list the installed releases
#
# Layout on the gateway:
#   /opt/propgw/releases/<release>/   one virtualenv per release (propgw and its dependencies)
#   /opt/propgw/current               symlink to the release in use (the unit runs current/bin/propgw)
#   /opt/propgw/previous              symlink to the release used before (what rollback goes back to)
#   /etc/propgw/site.yaml             the site config (the example on first install; never overwritten)
#   /etc/propgw/propgw.env            secrets, NAME=value (0600 root; never overwritten)
#   /var/lib/propgw/                  alarm journal and outbox (0750 propgw)
#   /var/lib/propgw-snapshots/        a copy of the state taken before each switch of release
#   /etc/systemd/system/propgw.service
#   /etc/mosquitto/conf.d/propgw.conf and /etc/mosquitto/propgw.passwd (the device broker)
#
# Idempotent: a second run with the same inputs changes nothing and says so. Every line it
# prints says what it did: "create", "update", "unchanged", "skip".
#
# --root DIR installs into DIR as if it were / (tests, CI): paths inside the installed files stay
# those of the real system, and nothing outside DIR is touched: no apt-get, no useradd, no chown,
# no systemctl. What would have been done is printed as "skip (--root): ...". A virtualenv is not
# relocatable, so a release built under --root runs only from there.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: install.sh [install] [OPTIONS]      install or upgrade, then switch to the new release
       install.sh rollback [RELEASE] [--root DIR] [--prefix DIR]
       install.sh releases [--root DIR] [--prefix DIR]
options:
  --root DIR          install into DIR as if it were / (tests, CI); see the top of this file
  --prefix DIR        where releases live on the gateway (default /opt/propgw)
  --wheel FILE        install this wheel instead of the checkout this script is in
  --release NAME      name of the release (default: propgw's version, e.g. 0.1.0)
  --lan-address ADDR  the Pi's address on the device LAN: mosquitto listens there too
                      (default: the address given last time; without one, loopback only)
  --mqtt-port N       the device broker's port (default: the one given last time, else 1883)
  --python PATH       the Python 3.11+ for the virtualenv (default python3)
  --pip-option OPT    passed to pip install (repeat it); offline: --pip-option=--no-index
                      --pip-option=--find-links=/media/usb/wheels
  --keep N            keep at most N releases besides current and previous (default 3)
  --no-mosquitto      leave mosquitto's configuration alone (kept for later runs;
                      --mosquitto undoes it)
  --no-start          do not enable, start or restart anything
USAGE
}

say() { printf '[install] %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }

here="$(cd "$(dirname "$0")/.." && pwd)"
action=""
root=""
prefix=/opt/propgw
wheel=""
release=""
lan_address=""
mqtt_port=""
python=python3
pip_options=()
keep=3
with_mosquitto=""
start=1
rollback_to=""
while [ $# -gt 0 ]; do
  opt="$1"; val=""
  case "$opt" in
    --*=*) val="${opt#*=}"; opt="${opt%%=*}" ;;
  esac
  takes_value() {
    if [ -z "$val" ]; then
      [ $# -ge 2 ] || die "$opt needs a value"
      val="$2"; return 0
    fi
    return 1
  }
  shifted=1
  case "$opt" in
    --root|--prefix|--wheel|--release|--lan-address|--mqtt-port|--python|--pip-option|--keep)
      if takes_value "$@"; then shifted=2; fi
      case "$opt" in
        --root) root="${val%/}" ;;
        --prefix) prefix="${val%/}" ;;
        --wheel) wheel="$val" ;;
        --release) release="$val" ;;
        --lan-address) lan_address="$val" ;;
        --mqtt-port) mqtt_port="$val" ;;
        --python) python="$val" ;;
        --pip-option) pip_options+=("$val") ;;
        --keep) keep="$val" ;;
      esac ;;
    --no-mosquitto) with_mosquitto=0 ;;
    --mosquitto) with_mosquitto=1 ;;
    --no-start) start=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $opt" ;;
    install|rollback|releases)
      if [ -z "$action" ]; then action="$opt"
      elif [ "$action" = rollback ] && [ -z "$rollback_to" ]; then rollback_to="$opt"
      else usage >&2; die "unexpected argument $opt"; fi ;;
    *)
      [ "$action" = rollback ] && [ -z "$rollback_to" ] || { usage >&2; die "unexpected argument $opt"; }
      rollback_to="$opt" ;;
  esac
  shift "$shifted"
done
action="${action:-install}"

case "$prefix" in /*) ;; *) die "--prefix must be an absolute path (got $prefix)" ;; esac
[[ "$keep" =~ ^[0-9]+$ ]] || die "--keep expects a number (got $keep)"
if [ -n "$root" ]; then
  mkdir -p "$root"
  root="$(cd "$root" && pwd -P)"
  [ "$root" != / ] || root=""
fi
# On the gateway itself (no --root) everything below needs root.
if [ -z "$root" ] && [ "$action" != releases ] && [ "$(id -u)" -ne 0 ]; then
  die "run it as root (sudo $0 ...), or pass --root DIR to install into a folder"
fi

R="$root"                       # prefix for file operations; empty on the real system
releases_dir="$prefix/releases"
marker=.propgw-release          # written last into a complete release
etc=/etc/propgw
state=/var/lib/propgw
snapshots=/var/lib/propgw-snapshots
unit_path=/etc/systemd/system/propgw.service
mq_conf=/etc/mosquitto/conf.d/propgw.conf
mq_passwd=/etc/mosquitto/propgw.passwd
settings="$etc/install.env"     # the choices of the last run (LAN address, port)

changed=0                        # anything changed by this run
restart_propgw=0
restart_mosquitto=0
reload_systemd=0

# -- helpers -----------------------------------------------------------------------------------

user_exists() { [ -z "$R" ] && getent passwd "$1" >/dev/null 2>&1; }

# ensure_dir PATH MODE OWNER:GROUP
ensure_dir() {
  local path="$1" mode="$2" owner="$3"
  if [ ! -d "$R$path" ]; then
    install -d -m "$mode" "$R$path"; say "create $path (mode $mode)"; changed=1
  elif [ "$(stat -c %a "$R$path")" != "${mode#0}" ]; then
    chmod "$mode" "$R$path" || die "cannot chmod $path"; say "update $path: mode $mode"; changed=1
  fi
  ensure_owner "$path" "$owner"
}

ensure_owner() {
  local path="$1" owner="$2"
  if [ -n "$R" ]; then
    say "skip (--root): chown $owner $path"
  elif [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
    chown "$owner" "$path" || die "cannot chown $owner $path"; say "update $path: owner $owner"; changed=1
  fi
}

# put_file SRC DEST MODE OWNER:GROUP — install SRC's content at DEST; returns 0 if it changed.
put_file() {
  local src="$1" dest="$2" mode="$3" owner="$4" what=create
  if [ -f "$R$dest" ]; then
    if cmp -s "$src" "$R$dest"; then
      if [ "$(stat -c %a "$R$dest")" != "${mode#0}" ]; then
        chmod "$mode" "$R$dest" || die "cannot chmod $dest"; say "update $dest: mode $mode"; changed=1
      fi
      ensure_owner "$dest" "$owner"
      return 1
    fi
    what=update
    cp -p "$R$dest" "$R$dest.bak" || die "cannot copy $R$dest to $R$dest.bak"
    say "keep the previous $dest as $dest.bak"
  fi
  # (set -e does not reach into a function called as a condition: check each step.)
  install -D -m "$mode" "$src" "$R$dest.new" && mv -f "$R$dest.new" "$R$dest" \
    || die "cannot write $R$dest"
  say "$what $dest (mode $mode)"; changed=1
  ensure_owner "$dest" "$owner"
  return 0
}

# The release a symlink points at ("" if none).
link_target() { [ -L "$R$1" ] && basename "$(readlink "$R$1")" || true; }

# switch LINK RELEASE — point LINK at releases/RELEASE atomically.
switch_link() {
  ln -sfn "releases/$2" "$R$1.new"
  mv -fT "$R$1.new" "$R$1"
}

list_releases() {
  local cur prev
  cur="$(link_target "$prefix/current")"; prev="$(link_target "$prefix/previous")"
  [ -d "$R$releases_dir" ] || { say "no releases in $releases_dir"; return 0; }
  local name
  for name in $(cd "$R$releases_dir" && ls -1 | sort -V); do
    [ -f "$R$releases_dir/$name/$marker" ] || continue
    local note=""
    [ "$name" = "$cur" ] && note=" (current)"
    [ "$name" = "$prev" ] && note=" (previous)"
    printf '%s%s\n' "$name" "$note"
  done
}

systemd_running() { [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# Stop propgw and copy its state aside before another release touches it: a newer release may
# upgrade the journal's or the outbox's format, which an older one then cannot read.
snapshot_state() {
  local to="$1"
  [ -d "$R$state" ] || return 0
  if systemd_running && systemctl is-active --quiet propgw; then
    if [ "$start" -eq 1 ]; then
      systemctl stop propgw; say "stop propgw"; restart_propgw=1
    else
      say "propgw is running (--no-start): the copy of its state may be torn; stop it first for a clean one"
    fi
  fi
  local dest
  dest="$snapshots/$(date -u +%Y%m%dT%H%M%SZ)-before-$to"
  install -d -m 0700 "$R$snapshots"
  cp -a "$R$state" "$R$dest"
  say "copy $state to $dest"
}

# -- releases ----------------------------------------------------------------------------------

if [ "$action" = releases ]; then
  list_releases
  exit 0
fi

if [ "$action" = rollback ]; then
  cur="$(link_target "$prefix/current")"
  to="${rollback_to:-$(link_target "$prefix/previous")}"
  [ -n "$to" ] || die "no previous release to go back to; name one: $0 rollback RELEASE ($(list_releases | tr '\n' ' '))"
  [ -f "$R$releases_dir/$to/$marker" ] || die "release $to is not installed in $releases_dir (installed: $(list_releases | tr '\n' ' '))"
  if [ "$to" = "$cur" ]; then
    say "unchanged: $to is already the current release"
    exit 0
  fi
  snapshot_state "$to"
  switch_link "$prefix/current" "$to"
  [ -n "$cur" ] && switch_link "$prefix/previous" "$cur"
  say "switch $prefix/current from ${cur:-nothing} to $to"
  if [ "$start" -eq 1 ] && systemd_running; then
    systemctl restart propgw; say "restart propgw"
  else
    say "skip: restart propgw (systemctl restart propgw)"
  fi
  exit 0
fi

# -- install -----------------------------------------------------------------------------------

# Choices of the last run: an upgrade without --lan-address keeps the LAN listener.
last_lan="" last_port="" last_mosquitto=""
if [ -f "$R$settings" ]; then
  last_lan="$(sed -n 's/^LAN_ADDRESS=//p' "$R$settings")"
  last_port="$(sed -n 's/^MQTT_PORT=//p' "$R$settings")"
  last_mosquitto="$(sed -n 's/^MOSQUITTO=//p' "$R$settings")"
fi
with_mosquitto="${with_mosquitto:-${last_mosquitto:-1}}"

# System packages (the real system only): a Python with venv, and mosquitto for MQTT devices.
if [ -z "$R" ]; then
  missing=()
  "$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ "$with_mosquitto" -eq 1 ]; then
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v mosquitto_passwd >/dev/null 2>&1 || missing+=(mosquitto)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
    changed=1
  fi
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || die "propgw needs Python 3.11 or newer ($python is older or missing; Debian 12 has 3.11)"

# What to install, and a fingerprint of it: the same files give the same release, unchanged.
if [ -n "$wheel" ]; then
  [ -f "$wheel" ] || die "--wheel $wheel: no such file"
  wheel="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"
  source_desc="$wheel"
  fingerprint="$(sha256sum "$wheel" | cut -d' ' -f1)"
  # propgw-0.1.0-py3-none-any.whl -> 0.1.0
  version="$(basename "$wheel" | cut -d- -f2)"
  [ -n "$version" ] || die "--wheel $wheel: not a wheel file name (propgw-VERSION-...whl)"
  install_spec="$wheel"
else
  [ -f "$here/pyproject.toml" ] && [ -f "$here/gateway/__init__.py" ] \
    || die "$here is not a propgw checkout; pass --wheel FILE"
  source_desc="$here"
  fingerprint="$(cd "$here" && find pyproject.toml README.md gateway drivers simulators config \
                   -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z \
                   | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$here/gateway/__init__.py")"
  [ -n "$version" ] || die "no __version__ in $here/gateway/__init__.py"
  install_spec="$here"
fi
release="${release:-$version}"
[[ "$release" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "--release $release: letters, digits, . _ + - only"

lan_address="${lan_address:-$last_lan}"
mqtt_port="${mqtt_port:-${last_port:-1883}}"
[[ "$mqtt_port" =~ ^[0-9]+$ ]] && [ "$mqtt_port" -ge 1 ] && [ "$mqtt_port" -le 65535 ] \
  || die "--mqtt-port expects a port number 1-65535 (got $mqtt_port)"
if [ -n "$lan_address" ] && ! [[ "$lan_address" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
  die "--lan-address expects the Pi's IPv4 address on the device LAN, e.g. 192.168.10.2 (got $lan_address)"
fi

say "propgw $version from $source_desc as release $release into ${R:-/}"

# The system user: no login, no home of its own, dialout for the serial ports.
if [ -n "$R" ]; then
  say "skip (--root): useradd --system --user-group --home-dir $state --no-create-home --shell /usr/sbin/nologin --groups dialout propgw"
elif ! user_exists propgw; then
  useradd --system --user-group --home-dir "$state" --no-create-home \
    --shell /usr/sbin/nologin --groups dialout propgw
  say "create system user propgw (groups: propgw, dialout)"; changed=1
elif ! id -nG propgw | tr ' ' '\n' | grep -qx dialout; then
  usermod -aG dialout propgw; say "update user propgw: add to dialout"; changed=1
fi

ensure_dir "$etc" 0750 root:propgw
ensure_dir "$state" 0750 propgw:propgw
ensure_dir "$prefix" 0755 root:root
ensure_dir "$releases_dir" 0755 root:root

# The release: a virtualenv of its own, complete only once its marker is written.
rel="$releases_dir/$release"
if [ -f "$R$rel/$marker" ]; then
  built_from="$(sed -n 's/^fingerprint=//p' "$R$rel/$marker")"
  if [ "$built_from" != "$fingerprint" ]; then
    die "release $release is already installed from other files (a changed checkout with the same version). Install it under another name: --release $release-2 (or remove $rel if it is neither current nor previous)"
  fi
  say "unchanged: release $release"
else
  [ "$(link_target "$prefix/current")" != "$release" ] \
    || die "$rel is current but incomplete; install under another name (--release NAME)"
  [ ! -e "$R$rel" ] || { rm -rf "${R:?}$rel"; say "remove the incomplete $rel"; }
  say "create release $release: virtualenv and propgw (pip; this takes a minute or two)"
  "$python" -m venv "$R$rel"
  # (pip's "WARNING: Location ... is ignored" lines come from a find-links in pip.conf.)
  if ! "$R$rel/bin/python" -m pip install -q --disable-pip-version-check \
       --no-warn-script-location ${pip_options[@]+"${pip_options[@]}"} "$install_spec" 2>&1 \
       | { grep -v '^WARNING: Location' || true; }; then
    die "pip could not install propgw into $R$rel (see above); run this again to retry"
  fi
  "$R$rel/bin/propgw" --version >/dev/null || die "the new release does not run: $R$rel/bin/propgw --version"
  # The service runs as propgw: a Python under /root (pyenv, say) is out of its reach.
  if [ -z "$R" ] && ! runuser -u propgw -- "$rel/bin/propgw" --version >/dev/null 2>&1; then
    interpreter="$(readlink -f "$rel/bin/python" || true)"
    rm -rf "${rel:?}"
    die "the user propgw cannot run $rel/bin/propgw: its Python ($interpreter) must be readable by every user; use the system's: --python /usr/bin/python3"
  fi
  if [ -z "$wheel" ]; then
    install -d "$R$rel/share/doc/propgw"
    cp -r "$here/docs/." "$R$rel/share/doc/propgw/"
  fi
  printf 'release=%s\nversion=%s\nfingerprint=%s\nsource=%s\n' \
    "$release" "$version" "$fingerprint" "$source_desc" > "$R$rel/$marker"
  changed=1
fi

# Config: the example site on first install only; propgw.env with the device broker's password.
bundled="$("$R$rel/bin/python" -I -c 'import gateway.config._loader as l, pathlib; print(pathlib.Path(l.__file__).resolve().parents[1] / "_bundled_config")')"
if [ ! -f "$R$etc/site.yaml" ]; then
  put_file "$bundled/examples/site.yaml" "$etc/site.yaml" 0640 root:propgw || true
  say "edit $etc/site.yaml for this site, then: propgw check-config $etc/site.yaml"
  new_site=1
else
  say "unchanged: $etc/site.yaml (yours; the example is $prefix/current/${bundled#"$R$rel/"}/examples/site.yaml)"
  new_site=0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

mq_password=""
new_password=0
if [ -f "$R$etc/propgw.env" ]; then
  mq_password="$(sed -n 's/^LOCAL_MQTT_PASSWORD=//p' "$R$etc/propgw.env" | tail -n 1)"
fi
if [ "$with_mosquitto" -eq 1 ] && [ -z "$mq_password" ]; then
  mq_password="$("$python" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  new_password=1
  {
    [ -f "$R$etc/propgw.env" ] && cat "$R$etc/propgw.env"
    [ -f "$R$etc/propgw.env" ] || printf '%s\n' \
      "# Secrets of the site file's \${NAME} references, NAME=value (systemd's EnvironmentFile)." \
      "# The upstream platform's MQTT password, for example:" \
      "# PLATFORM_MQTT_PASSWORD=..."
    printf '%s\n' "# propgw's password on the device broker (mosquitto), set by install.sh." \
      "LOCAL_MQTT_PASSWORD=$mq_password"
  } > "$tmp/propgw.env"
  put_file "$tmp/propgw.env" "$etc/propgw.env" 0600 root:root || true
elif [ ! -f "$R$etc/propgw.env" ]; then
  printf '%s\n' "# Secrets of the site file's \${NAME} references, NAME=value." > "$tmp/propgw.env"
  put_file "$tmp/propgw.env" "$etc/propgw.env" 0600 root:root || true
else
  put_file "$R$etc/propgw.env" "$etc/propgw.env" 0600 root:root || true
fi

# The device broker.
if [ "$with_mosquitto" -eq 1 ]; then
  if [ -n "$lan_address" ]; then
    lan_line="listener $mqtt_port $lan_address"
  else
    lan_line="# (no device-LAN listener: install.sh --lan-address ADDRESS adds one)"
  fi
  sed -e "s|@PASSWORD_FILE@|$mq_passwd|" -e "s|@PORT@|$mqtt_port|" -e "s|^@LAN_LISTENER@\$|$lan_line|" \
    "$here/mosquitto/propgw.conf" > "$tmp/propgw.conf"
  if put_file "$tmp/propgw.conf" "$mq_conf" 0644 root:root; then restart_mosquitto=1; fi
  # The password file: propgw's entry is added if missing; device accounts are left alone.
  mq_group=mosquitto
  [ -n "$R" ] || getent group mosquitto >/dev/null || mq_group=root
  if [ "$new_password" -eq 1 ] || [ ! -f "$R$mq_passwd" ] || ! grep -q '^propgw:' "$R$mq_passwd"; then
    install -d "$(dirname "$R$mq_passwd")"
    [ -f "$R$mq_passwd" ] || install -m 0640 /dev/null "$R$mq_passwd"
    mosquitto_passwd -b "$R$mq_passwd" propgw "$mq_password"
    say "update $mq_passwd: account propgw (its password is LOCAL_MQTT_PASSWORD in $etc/propgw.env)"
    changed=1; restart_mosquitto=1
  fi
  # mosquitto reads the file after it has dropped to its own user: readable by that group.
  if [ "$(stat -c %a "$R$mq_passwd")" != 640 ]; then
    chmod 0640 "$R$mq_passwd"; say "update $mq_passwd: mode 0640"; changed=1
  fi
  ensure_owner "$mq_passwd" "root:$mq_group"
fi

printf 'LAN_ADDRESS=%s\nMQTT_PORT=%s\nMOSQUITTO=%s\n' "$lan_address" "$mqtt_port" \
  "$with_mosquitto" > "$tmp/install.env"
put_file "$tmp/install.env" "$settings" 0644 root:root || true

# The unit, with this prefix's paths.
sed "s|/opt/propgw/|$prefix/|g" "$here/systemd/propgw.service" > "$tmp/propgw.service"
if put_file "$tmp/propgw.service" "$unit_path" 0644 root:root; then
  reload_systemd=1; restart_propgw=1
fi

# Switch to the release.
cur="$(link_target "$prefix/current")"
if [ "$cur" = "$release" ]; then
  say "unchanged: $prefix/current -> releases/$release"
else
  [ -n "$cur" ] && snapshot_state "$release"
  switch_link "$prefix/current" "$release"
  [ -n "$cur" ] && switch_link "$prefix/previous" "$cur"
  say "switch $prefix/current from ${cur:-nothing} to $release${cur:+ (rollback: $0 rollback)}"
  changed=1; restart_propgw=1
fi

# Old releases: keep current, previous and the newest --keep others.
cur="$(link_target "$prefix/current")"; prev="$(link_target "$prefix/previous")"
mapfile -t others < <(cd "$R$releases_dir" && ls -1t | grep -vxF -e "$cur" -e "${prev:-/}" || true)
for old in "${others[@]:$keep}"; do
  rm -rf "${R:?}$releases_dir/${old:?}"; say "remove old release $old"; changed=1
done

# Services.
if [ "$start" -eq 0 ] || [ -n "$R" ] || ! systemd_running; then
  why="--no-start"; [ -n "$R" ] && why="--root"; [ "$start" -eq 1 ] && [ -z "$R" ] && why="no systemd"
  [ "$reload_systemd" -eq 1 ] && say "skip ($why): systemctl daemon-reload"
  [ "$restart_mosquitto" -eq 1 ] && say "skip ($why): systemctl restart mosquitto"
  [ "$restart_propgw" -eq 1 ] && say "skip ($why): systemctl enable propgw && systemctl restart propgw"
else
  [ "$reload_systemd" -eq 1 ] && { systemctl daemon-reload; say "systemctl daemon-reload"; }
  if [ "$restart_mosquitto" -eq 1 ]; then
    systemctl enable --quiet mosquitto; systemctl restart mosquitto; say "restart mosquitto"
  fi
  if [ "$new_site" -eq 1 ]; then
    say "not started: edit $etc/site.yaml first, then: systemctl enable --now propgw"
  elif [ "$restart_propgw" -eq 1 ]; then
    systemctl enable --quiet propgw; systemctl restart propgw; say "restart propgw"
  fi
fi

if [ "$changed" -eq 0 ]; then
  say "nothing to do: release $release is installed and current, every file is up to date"
else
  say "done: release $release is current"
fi
