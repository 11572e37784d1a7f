"""The operator console: alarm board, work orders, devices, history and KPIs in the browser,
and the REST API and live feed behind them (served by :mod:`gateway.http_server`)."""

from gateway.console._backend import Backend, StatusHandler
from gateway.console._feed import EventHub, FeedEvent
from gateway.console._routes import ConsoleRoutes, static_dir
from gateway.console._service import ConsoleService
from gateway.console._users import (
    ROLES,
    Role,
    TokenInfo,
    User,
    UserError,
    UserStore,
    can,
    first_admin_command,
    users_path,
)

__all__ = ["ROLES", "Backend", "ConsoleRoutes", "ConsoleService", "EventHub", "FeedEvent", "Role",
           "StatusHandler", "TokenInfo", "User", "UserError", "UserStore", "can",
           "first_admin_command", "static_dir", "users_path"]
