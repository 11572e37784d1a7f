"""``propgw users``: the console's users and API tokens, managed from the gateway's shell.

* ``propgw users add -c site.yaml NAME --role ROLE`` — a new user; asks for the password twice
  (or reads one line from standard input with ``--password-stdin``, for scripts).
* ``propgw users passwd -c site.yaml NAME`` — a new password, asked the same way.
* ``propgw users role -c site.yaml NAME ROLE`` — another role.
* ``propgw users del -c site.yaml NAME`` — delete a user and their tokens.
* ``propgw users list -c site.yaml [--json]`` — users, roles and their tokens' labels.
* ``propgw users token -c site.yaml NAME [--label L]`` — a new API token, printed once, for
  ``propgw alarms`` and scripts.
* ``propgw users revoke -c site.yaml NAME [--label L]`` — end a user's tokens.

Passwords never appear on the command line (where ``ps`` and the shell history would keep
them). The user file is the one the config's gateway uses (:func:`gateway.console.users_path`)
and must stay the gateway's: a command run as another system user is refused, with the
``sudo -u`` line that works.

Exit status: 0 done; 1 the user file refused (the name is taken, no such user, the last admin);
2 the command line or the site config cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_users_parser", "run_users_command"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
ROLES = ("viewer", "operator", "engineer", "admin")
_PROG = "propgw users"
#: What a change to the file means for a gateway that is running now (it caches token checks
#: for a minute and keeps browser sessions in memory).
_RUNNING = ("a running gateway applies this to API tokens within a minute; browsers already "
            "logged in keep their access until they log out or the gateway restarts "
            "(systemctl restart propgw)")


class _Usage(Exception):
    """The command cannot run as given; exit 2 with this message."""


class _Refused(Exception):
    """The user file refused the operation; exit 1 with this message."""


def add_users_parser(sub: Any) -> None:
    """Register ``propgw users`` and its sub-commands on the top-level sub-parser set."""
    users = sub.add_parser(
        "users", help="console users and API tokens",
        description="Manage who may use the console and its API. Roles, least to most: "
                    "viewer (sees everything), operator (acts on alarms), engineer (also takes "
                    "alarms out of service), admin (also manages users).")
    cmds = users.add_subparsers(dest="users_command", metavar="USERS_COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = cmds.add_parser(name, help=help_text,
                                                           description=help_text)
        parser.add_argument("-c", "--config", required=True, type=Path, metavar="FILE",
                            help="site config (YAML); names the user file")
        return parser

    add = command("add", "create a user (asks for the password twice)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    _password_stdin(add)

    passwd = command("passwd", "set a user's password (asks twice)")
    passwd.add_argument("name", metavar="NAME")
    _password_stdin(passwd)

    role = command("role", "give a user another role")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=ROLES, metavar="ROLE", help=", ".join(ROLES))

    delete = command("del", "delete a user and their API tokens")
    delete.add_argument("name", metavar="NAME")

    listing = command("list", "users, roles and their API tokens' labels")
    listing.add_argument("--json", action="store_true", help="print JSON")

    token = command("token", "print a new API token for a user (shown once; it acts with the "
                             "user's role)")
    token.add_argument("name", metavar="NAME")
    token.add_argument("--label", default="", metavar="TEXT",
                       help="what the token is for (shown by list, used by revoke --label)")

    revoke = command("revoke", "end a user's API tokens")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--label", metavar="TEXT", help="only the tokens with this label")


def run_users_command(args: argparse.Namespace, out: TextIO | None = None,
                      stdin: TextIO | None = None) -> int:
    """Run ``propgw users ...``; returns the exit status.

    Args:
        args: The parsed command line.
        out: Where results go (default standard output); notes go to standard error.
        stdin: Where ``--password-stdin`` reads (default standard input).

    Raises:
        ConfigError: the site config is broken (the caller prints it).
    """
    out = out or sys.stdout
    try:
        _run(args, out, stdin or sys.stdin)
    except _Usage as exc:
        print(f"{_PROG} {args.users_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Refused as exc:
        print(f"{_PROG} {args.users_command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _run(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from gateway.console import UserError, UserStore
    from gateway.terminal import load_site

    path = _users_file(args.config, load_site(args.config))
    command: str = args.users_command
    if command != "add" and not path.exists():
        if command == "list":
            print(f"no users yet (no user file at {path}). Create the first admin with:\n"
                  f"  propgw users add -c {args.config} NAME --role admin", file=out)
            return
        raise _Refused(f"no user file at {path}: no users yet (propgw users add creates it)")
    _check_owner(path)
    try:
        with UserStore(path) as store:
            _act(args, store, out, stdin)
    except UserError as exc:
        raise _Refused(str(exc)) from None
    except OSError as exc:
        raise _Refused(f"cannot use the user file {path}: {exc}") from None


def _act(args: argparse.Namespace, store: Any, out: TextIO, stdin: TextIO) -> None:
    from gateway.console import UserError

    command, name = args.users_command, getattr(args, "name", "")
    if command == "add":
        if store.get(name) is not None:
            raise UserError(f"user {name!r} exists already")
        user = store.add(name, args.role, _password(args, name, stdin))
        print(f"added {user.name} ({user.role})", file=out)
    elif command == "passwd":
        if store.get(name) is None:
            raise UserError(f"no user {name!r}")
        store.set_password(name, _password(args, name, stdin))
        print(f"password of {name} changed", file=out)
        _note("browsers already logged in as them stay logged in until they log out or the "
              "gateway restarts")
    elif command == "role":
        store.set_role(name, args.role)
        print(f"{name} is now {args.role}", file=out)
        _note(_RUNNING)
    elif command == "del":
        store.delete(name)
        print(f"deleted {name} and their API tokens", file=out)
        _note(_RUNNING)
    elif command == "list":
        _list(store, out, as_json=args.json)
    elif command == "token":
        user = store.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        token = store.issue_token(name, args.label)
        print(token, file=out)
        print(f"an API token for {name} ({user.role}); it is shown only this once. Keep it "
              f"in PROPGW_TOKEN or in a file only you can read (chmod 600) for "
              f"`propgw alarms --token-file`", file=sys.stderr)
    elif command == "revoke":
        if store.get(name) is None:
            raise UserError(f"no user {name!r}")
        count = store.revoke_tokens(name, args.label)
        which = f" labelled {args.label!r}" if args.label is not None else ""
        print(f"revoked {count} API token(s) of {name}{which}", file=out)
        if count:
            _note(_RUNNING)


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _list(store: Any, out: TextIO, *, as_json: bool) -> None:
    users = store.list()
    tokens: dict[str, list[Any]] = {}
    for info in store.tokens():
        tokens.setdefault(info.name, []).append(info)
    if as_json:
        print(json.dumps([{"name": u.name, "role": u.role, "tokens": [
            {"label": t.label, "created": _iso(t.created)} for t in tokens.get(u.name, [])]}
            for u in users], ensure_ascii=False, indent=2), file=out)
        return
    if not users:
        print("no users yet", file=out)
        return
    width = max(4, *(len(u.name) for u in users))
    print(f"{'NAME':<{width}}  {'ROLE':<8}  API TOKENS", file=out)
    for u in users:
        labels = [t.label or "(no label)" for t in tokens.get(u.name, [])]
        print(f"{u.name:<{width}}  {u.role:<8}  {', '.join(labels) or '-'}", file=out)


def _users_file(source: Path, config: Any) -> Path:
    from gateway.console import users_path

    path = users_path(config)
    if path is None:
        raise _Usage(
            f"{source} names no place for the user file: set state_dir in it (the folder the "
            f"gateway keeps its state in, /var/lib/propgw under the shipped systemd unit), or "
            f"console.users_file. A gateway under systemd without state_dir uses the unit's "
            f"StateDirectory=, which this shell does not know: then put "
            f"STATE_DIRECTORY=/var/lib/propgw in front of the command, as the gateway's log "
            f"says")
    return path


def _check_owner(path: Path) -> None:
    """Refuse to touch another system user's user file: a file created (or left) owned by
    root where the gateway runs as ``propgw`` would lock the console out."""
    existing = path if path.exists() else next(
        (p for p in path.parents if p.exists()), Path("/"))
    owner = existing.stat().st_uid
    if owner == os.geteuid():
        return
    try:
        owner_name = pwd.getpwuid(owner).pw_name
    except KeyError:
        owner_name = str(owner)
    what = "the user file" if existing == path else "the folder of the user file"
    raise _Usage(f"{what} ({existing}) belongs to {owner_name}, and the gateway needs it to "
                 f"stay that way; run the command as that user: sudo -u {owner_name} "
                 f"{' '.join(_shell_args())}")


def _password(args: argparse.Namespace, name: str, stdin: TextIO) -> str:
    import getpass

    from gateway.console._users import MIN_PASSWORD

    if args.password_stdin:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise _Usage("--password-stdin: standard input had no password (one line)")
    else:
        if not _has_terminal():
            raise _Usage("no terminal to ask for the password; pipe it in with "
                         "--password-stdin")
        password = getpass.getpass(f"new password for {name} (at least {MIN_PASSWORD} "
                                   f"characters): ")
        if len(password) >= MIN_PASSWORD and getpass.getpass("again: ") != password:
            raise _Usage("the two passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD:
        raise _Usage(f"a password needs at least {MIN_PASSWORD} characters; nothing changed")
    return password


def _has_terminal() -> bool:
    """Whether getpass can ask without echoing (it reads /dev/tty)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input "
                             "instead of asking (for scripts)")


def _shell_args() -> list[str]:
    import shlex

    return ["propgw", *(shlex.quote(a) for a in sys.argv[1:])]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")
