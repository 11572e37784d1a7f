"""The terminal side of the console: ``propgw alarms list|ack|...|watch`` talking to a running
gateway's API with an API token, and what ``propgw users`` shares with them (the site config as
a shell sees it)."""

from gateway.terminal._board import (
    Lang,
    Style,
    board_lines,
    clean,
    display_width,
    event_line,
    fit,
    label,
    summary_line,
    terminal_size,
    terminal_style,
    title_line,
)
from gateway.terminal._client import (
    TOKEN_ENV,
    URL_ENV,
    ApiClient,
    ApiError,
    Connection,
    SseEvent,
    connection_from,
    parse_sse,
    site_zone,
)
from gateway.terminal._commands import ACTIONS, REMOTE_COMMANDS, run_remote, run_remote_async
from gateway.terminal._remote import with_gateway
from gateway.terminal._site import SiteProblem, console_url, load_site
from gateway.terminal._watch import watch

__all__ = ["ACTIONS", "REMOTE_COMMANDS", "TOKEN_ENV", "URL_ENV", "ApiClient", "ApiError",
           "Connection", "Lang", "SiteProblem", "SseEvent", "Style", "board_lines", "clean",
           "connection_from", "console_url", "display_width", "event_line", "fit", "label",
           "load_site", "parse_sse", "run_remote", "run_remote_async", "site_zone",
           "summary_line", "terminal_size", "terminal_style", "title_line", "watch",
           "with_gateway"]
