"""``propgw alarms list|ack|shelve|unshelve|reset|oos|return|comment|watch``: the running
gateway's alarm board and operator actions, through its console API with an API token.

Exit status: 0 done; 1 the gateway refused (the lifecycle's reason, an unknown alarm, a token it
does not know, a role too low) or could not be reached; 2 the command line or the site config
cannot be used (no token, a token file others can read, no console configured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, TextIO
from urllib.parse import quote

from gateway.config import parse_duration
from gateway.terminal._board import (
    Lang,
    board_lines,
    clean,
    fit,
    summary_line,
    terminal_size,
    terminal_style,
    title_line,
)
from gateway.terminal._client import ApiClient, ApiError, site_zone
from gateway.terminal._remote import EXIT_FAILED, EXIT_USAGE, with_gateway
from gateway.terminal._watch import watch

__all__ = ["ACTIONS", "REMOTE_COMMANDS", "run_remote", "run_remote_async"]

EXIT_OK = 0

#: sub-command -> (API action path, what it did, past tense)
ACTIONS: dict[str, tuple[str, str]] = {
    "ack": ("acknowledge", "acknowledged"),
    "shelve": ("shelve", "shelved"),
    "unshelve": ("unshelve", "unshelved"),
    "reset": ("reset", "reset"),
    "oos": ("remove-from-service", "taken out of service"),
    "return": ("return-to-service", "returned to service"),
    "comment": ("comment", "commented"),
}
REMOTE_COMMANDS = frozenset({"list", "watch", *ACTIONS})


def run_remote(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one of :data:`REMOTE_COMMANDS` to the end; returns the exit status.

    Raises:
        ConfigError: the site config is broken (the caller prints it).
    """
    try:
        return asyncio.run(run_remote_async(args, out))
    except BrokenPipeError:
        # `propgw alarms list | head`: the reader left. Point standard output at /dev/null so
        # Python's own flush at exit does not complain about the same pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


async def run_remote_async(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """:func:`run_remote` inside a running event loop (tests drive it next to a gateway)."""
    out = out or sys.stdout
    command: str = args.alarms_command
    try:
        body = _action_body(args) if command in ACTIONS else {}
    except ValueError as exc:
        _complain(command, str(exc))
        return EXIT_USAGE

    async def call(client: ApiClient) -> int:
        if command == "list":
            return await _list(client, args, out)
        if command == "watch":
            return await watch(client, lang=args.lang, out=out,
                               lines=args.lines or not out.isatty())
        return await _act(client, command, args.alarm_ids, body, out)

    return await with_gateway(args, call, lambda message: _complain(command, message))


# --------------------------------------------------------------------------- commands


async def _list(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    board = await client.get("/api/v1/alarms")
    if args.json:
        print(json.dumps(board, ensure_ascii=False, indent=2), file=out)
        return EXIT_OK
    site, tz = await site_zone(client)
    now = time.time()
    lang: Lang = args.lang
    width = terminal_size(out).columns if out.isatty() else None
    head = [title_line(site, tz, now), summary_line(board, lang)]
    for line in head:
        print(fit(line, width).rstrip() if width else line, file=out)
    for line in board_lines(board, tz=tz, now=now, lang=lang, width=width,
                            style=terminal_style(out)):
        print(line, file=out)
    return EXIT_OK


async def _act(client: ApiClient, command: str, alarm_ids: list[str], body: dict[str, Any],
               out: TextIO) -> int:
    action, done = ACTIONS[command]
    status = EXIT_OK
    for alarm_id in alarm_ids:
        path = f"/api/v1/alarms/{quote(alarm_id, safe='@')}/{action}"
        try:
            alarm = await client.post(path, body)
        except ApiError as exc:
            if exc.status in (0, 401, 403):
                raise  # the same for every alarm: say it once
            reason = f"refused: {exc}" if exc.status == 409 else str(exc)
            _complain(command, f"{clean(alarm_id)}: {reason}")
            status = EXIT_FAILED
            continue
        state = alarm.get("state", "?") if isinstance(alarm, dict) else "?"
        print(f"{clean(alarm_id)}: {done} (state: {clean(state)})", file=out)
    return status


def _action_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON body the API wants for this action.

    Raises:
        ValueError: a value the gateway would refuse anyway (said here, in the CLI's words).
    """
    command = args.alarms_command
    if command == "ack":
        return {"comment": args.comment or ""}
    if command == "comment":
        if not args.text.strip():
            raise ValueError("the comment is empty")
        return {"text": args.text}
    if command == "shelve":
        if not args.reason.strip():
            raise ValueError("--reason must say why (it is journaled)")
        body: dict[str, Any] = {"reason": args.reason, "one_shot": args.one_shot}
        if args.duration is not None:
            seconds = float(parse_duration(args.duration))
            if seconds <= 0:
                raise ValueError(f"--for wants a positive duration, got {args.duration!r}")
            body["duration_s"] = seconds
        return body
    if command == "oos" and not args.reason.strip():
        raise ValueError("--reason must say why (it is journaled)")
    return {"reason": args.reason or ""}


def _complain(command: str, message: str) -> None:
    print(f"propgw alarms {command}: {message}", file=sys.stderr)
