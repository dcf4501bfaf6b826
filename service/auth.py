"""Authentication as middleware, and the access levels routes declare.

On protected routes the middleware reads `Authorization: Bearer`, resolves the user once,
puts it on the request under CURRENT_USER, and enforces the route's declared access level
before the body is validated: 401 before 403 before 422, as the contract orders them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from service import keys, tokens
from service.accounts.powers import check_superuser_powers
from service.errors import Forbidden, Unauthorized
from service.queries import users
from service.queries.users import User
from service.settings import ProductWriteAccess

F = TypeVar("F", bound=Callable[..., Any])


class Access(enum.Enum):
    """Who may call a route."""

    PUBLIC = "public"
    USER = "user"  # any active user
    SUPERUSER = "superuser"
    PRODUCT_WRITE = "product_write"  # as PRODUCT_WRITE_ACCESS says


def requires(access: Access) -> Callable[[F], F]:
    """Declare a route's access level; the auth middleware enforces it."""

    def mark(handler: F) -> F:
        handler.__access__ = access  # type: ignore[attr-defined]
        return handler

    return mark


def effective_access(handler: object, product_write: ProductWriteAccess) -> Access:
    """The access level a handler declared, with PRODUCT_WRITE resolved from the settings."""
    declared = getattr(handler, "__access__", Access.PUBLIC)
    if declared is not Access.PRODUCT_WRITE:
        return declared
    return {
        ProductWriteAccess.PUBLIC: Access.PUBLIC,
        ProductWriteAccess.USER: Access.USER,
        ProductWriteAccess.SUPERUSER: Access.SUPERUSER,
    }[product_write]


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer token's user and enforce the route's access level.

    Public routes ignore the Authorization header, as the original system's did: a client
    that still sends an expired token, or Swagger UI sending its client credentials as
    HTTP Basic to the login route, must not be refused there.
    """
    settings = request.app[keys.SETTINGS]
    access = effective_access(request.match_info.handler, settings.product_write_access)
    header = request.headers.get("Authorization")
    user, session_id = None, None
    if access is not Access.PUBLIC and header is not None:
        user, session_id = await _caller_from_header(request, header)
    request[keys.CURRENT_USER] = user
    request[keys.CURRENT_SESSION] = session_id
    if access is not Access.PUBLIC:
        if user is None:
            raise Unauthorized("not_authenticated")
        if not user.is_active:
            raise Forbidden("inactive_user")
        if access is Access.SUPERUSER:
            # Only here and where the account rules act on another user: the caller's
            # own routes (his TOTP routes too) stay open, so that he can enroll.
            check_superuser_powers(settings, user)
    return await handler(request)


def current_user(request: web.Request) -> User:
    """The caller, on a route that declared USER or SUPERUSER access."""
    user = request[keys.CURRENT_USER]
    if user is None:  # the middleware guarantees a user on protected routes
        raise Unauthorized("not_authenticated")
    return user


def current_session(request: web.Request) -> str:
    """The id of the session the caller's access token belongs to."""
    session_id = request[keys.CURRENT_SESSION]
    if session_id is None:
        raise Unauthorized("not_authenticated")
    return session_id


async def _caller_from_header(request: web.Request, header: str) -> tuple[User, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("invalid_credentials")
    try:
        claims = tokens.decode(token.strip(), key=request.app[keys.TOKEN_KEY])
    except tokens.InvalidToken:
        raise Unauthorized("invalid_credentials") from None
    async with request.app[keys.DATABASE].read() as conn:
        found = await users.get_with_session(
            conn, user_id=claims.user_id, session_id=claims.session_id, now=time.time()
        )
    if found is None:  # a deleted user
        raise Unauthorized("invalid_credentials")
    user, session_open = found
    # A token older than the last password change; or a session ended by logout, by theft
    # detection, or by an administrator. (An inactive user's sessions were ended too; he is
    # told 403 "Inactive user".)
    if user.token_version != claims.token_version or (user.is_active and not session_open):
        raise Unauthorized("invalid_credentials")
    return user, claims.session_id
