"""The terminal side of the console: what ``propgw users`` (and, later, the remote ``propgw
alarms`` commands) need from the site config as a shell sees it."""

from gateway.terminal._site import SiteProblem, console_url, load_site

__all__ = ["SiteProblem", "console_url", "load_site"]
