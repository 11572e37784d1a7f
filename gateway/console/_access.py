"""Logging in and out, and managing users (admins): the console API's access routes."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp_pydantic import PydanticView
from aiohttp_pydantic.oas.typing import r200, r201, r204, r400, r401, r404, r429

from gateway.console._auth import COOKIE, SESSION, USER, Access
from gateway.console._schema import (
    ErrorBody,
    LoginBody,
    SessionView,
    UserBody,
    UserPatch,
    UserView,
)
from gateway.console._service import CONSOLE
from gateway.console._users import UserError

__all__ = ["ACCESS_ROUTES", "ACCESS_VIEWS"]

log = logging.getLogger(__name__)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class SessionResource(PydanticView):
    async def post(self, body: LoginBody) -> (r200[SessionView] | r401[ErrorBody]
                                              | r429[ErrorBody]):
        """Log in: sets the session cookie; answers the CSRF token to send with every change.

        Tags: session
        Status Codes:
          200: logged in
          401: wrong name or password
          429: too many failures for this name or address; Retry-After says how long
        """
        console = self.request.app[CONSOLE]
        keys = [f"user:{body.name}", f"addr:{self.request.remote}"]
        wait = console.throttle.retry_after(keys)
        if wait is not None:
            return _error(429, "too many failed logins; try again later",
                          **{"Retry-After": str(int(wait) + 1)})
        user = await console.login(body.name, body.password)
        if user is None:
            console.throttle.failed(keys)
            log.warning("console: failed login for %r from %s", body.name, self.request.remote)
            return _error(401, "wrong name or password")
        console.throttle.succeeded(keys)
        session = console.sessions.create(user)
        log.info("console: %s (%s) logged in from %s", user.name, user.role, self.request.remote)
        response = web.json_response(SessionView(name=user.name, role=user.role,
                                                 csrf_token=session.csrf).model_dump())
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict",
                            secure=self.request.secure, path="/",
                            max_age=int(console.cfg.session_ttl))
        return response

    async def get(self) -> r200[SessionView] | r401[ErrorBody]:
        """Who is logged in (and the CSRF token), for a page that was reloaded.

        Tags: session
        """
        user = self.request[USER]
        session = self.request.get(SESSION)
        return web.json_response(SessionView(
            name=user.name, role=user.role,
            csrf_token=session.csrf if session is not None else "").model_dump())

    async def delete(self) -> r204[None]:
        """Log out.

        Tags: session
        """
        session = self.request.get(SESSION)
        if session is not None:
            self.request.app[CONSOLE].sessions.drop(session.id)
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/")
        return response


class UsersResource(PydanticView):
    async def get(self) -> r200[list[UserView]]:
        """Every user and role (admins).

        Tags: users
        """
        store = self.request.app[CONSOLE].users
        users = await asyncio.to_thread(store.list) if store is not None else []
        return web.json_response([UserView(name=u.name, role=u.role).model_dump()
                                  for u in users])

    async def post(self, body: UserBody) -> r201[UserView] | r400[ErrorBody]:
        """Create a user (admins).

        Tags: users
        """
        console = self.request.app[CONSOLE]
        if console.users is None:
            return _error(400, "no user file: set state_dir")
        try:
            user = await asyncio.to_thread(console.users.add, body.name, body.role, body.password)
        except UserError as exc:
            return _error(400, str(exc))
        log.info("console: user %s (%s) added by %s", user.name, user.role,
                 self.request[USER].name)
        return web.json_response(UserView(name=user.name, role=user.role).model_dump(),
                                 status=201)


class UserResource(PydanticView):
    async def patch(self, name: str, /, body: UserPatch) -> (r200[UserView] | r400[ErrorBody]
                                                            | r404[ErrorBody]):
        """Change a user's role and/or password (admins); their sessions end.

        Tags: users
        """
        console = self.request.app[CONSOLE]
        store = console.users
        if store is None:
            return _error(404, f"no user {name!r}")
        try:
            if body.role is not None:
                await asyncio.to_thread(store.set_role, name, body.role)
            if body.password is not None:
                await asyncio.to_thread(store.set_password, name, body.password)
            user = await asyncio.to_thread(store.get, name)
        except UserError as exc:
            return _error(404 if "no user" in str(exc) else 400, str(exc))
        if user is None:
            return _error(404, f"no user {name!r}")
        console.forget_user(name)
        log.info("console: user %s changed by %s", name, self.request[USER].name)
        return web.json_response(UserView(name=user.name, role=user.role).model_dump())

    async def delete(self, name: str, /) -> r204[None] | r400[ErrorBody] | r404[ErrorBody]:
        """Delete a user (admins); their sessions and tokens end.

        Tags: users
        """
        console = self.request.app[CONSOLE]
        if console.users is None:
            return _error(404, f"no user {name!r}")
        try:
            await asyncio.to_thread(console.users.delete, name)
        except UserError as exc:
            return _error(404 if "no user" in str(exc) else 400, str(exc))
        console.forget_user(name)
        log.info("console: user %s deleted by %s", name, self.request[USER].name)
        return web.Response(status=204)


ACCESS_VIEWS: list[tuple[str, type[PydanticView]]] = [
    ("/api/v1/session", SessionResource),
    ("/api/v1/users", UsersResource),
    ("/api/v1/users/{name}", UserResource),
]

ACCESS_ROUTES: dict[tuple[str, str], Access] = {
    ("POST", "/api/v1/session"): "public",
    ("GET", "/api/v1/session"): "viewer",
    ("DELETE", "/api/v1/session"): "viewer",
    ("GET", "/api/v1/users"): "admin",
    ("POST", "/api/v1/users"): "admin",
    ("PATCH", "/api/v1/users/{name}"): "admin",
    ("DELETE", "/api/v1/users/{name}"): "admin",
}
