"""Login (OAuth2 password flow), token check, refresh-token rotation and logout."""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from aiohttp import web
from aiohttp_apispec import docs, form_schema, request_schema, response_schema
from loguru import logger

from service import keys, tokens
from service.auth import Access, current_session, current_user, requires
from service.db import Connection
from service.errors import ApiError, BadRequest, Unauthorized
from service.openapi import error_responses
from service.queries import login_failures, sessions, users
from service.queries.users import User
from service.responses import json_response
from service.routes.users import user_json
from service.schemas.users import (
    LoginFormSchema,
    RefreshSchema,
    TokenSchema,
    UserSchema,
    username_problem,
)
from service.validation import accepts_form_too

routes = web.RouteTableDef()

_MAX_USER_AGENT = 256


@routes.post("/login/access-token")
@docs(
    tags=["login"],
    summary="Log in: trade a username and password for an access token",
    description="OAuth2 password flow (form fields; `grant_type` and `scope` are ignored). "
    "Unknown user and wrong password get the same 401. After LOGIN_MAX_FAILURES failures "
    "for one username from one address within LOGIN_FAILURE_WINDOW_SECONDS: 429 with "
    "Retry-After, even with the right password, until the window passes.",
    consumes=["application/x-www-form-urlencoded"],
    responses=error_responses(400, 401, 415, 422, 429),
)
@form_schema(LoginFormSchema)
@response_schema(TokenSchema, 200, description="A bearer token (Cache-Control: no-store)")
async def login_access_token(request: web.Request) -> web.Response:
    form = request["form"]
    username, password = form["username"], form["password"]
    throttled = _throttled_name(username, request.app[keys.TOKEN_KEY])
    throttle_key = {"username": throttled, "client": request.remote or ""}
    async with request.app[keys.DATABASE].read() as conn:
        _refuse_if_locked(await _seconds_locked(request, conn, throttle_key))  # spare the hash
    user = await _authenticate(request, username, password)
    wait, session = await _settle_attempt(request, throttle_key, user)
    _refuse_if_locked(wait)
    if user is None:
        # The username only if it could be one: a password typed into the wrong field
        # must not reach the log.
        shown = repr(username) if username_problem(username) is None else "(not a username)"
        logger.bind(request_id=request[keys.REQUEST_ID]).warning(f"failed login for {shown}")
        raise Unauthorized("incorrect_login")
    if session is None:  # the right password of an inactive user
        raise BadRequest("inactive_user")
    return _token_response(request, user, *session)


async def _settle_attempt(
    request: web.Request, throttle_key: dict[str, str], user: User | None
) -> tuple[float, tuple[str, str] | None]:
    """The attempt's verdict, in one unit of work after the verify.

    Parallel attempts each see the failures committed before them, so at most
    LOGIN_MAX_FAILURES of them get an answer other than 429, and a 429 says nothing about
    the password. Returns the lockout's wait (0 if none) and, for an active user who gave
    the right password, the new session's id and refresh token.
    """
    try:
        async with request.app[keys.DATABASE].transaction() as conn:
            wait = await _seconds_locked(request, conn, throttle_key)
            if wait > 0:
                return wait, None
            if user is None:
                await _record_failure(request, conn, throttle_key)
                return 0.0, None
            await login_failures.clear_failures(conn, **throttle_key)
            if not user.is_active:
                return 0.0, None
            return 0.0, await _open_session(request, conn, user)
    except sessions.UserGone:  # deleted while the password was being verified
        raise Unauthorized("incorrect_login") from None


async def _open_session(request: web.Request, conn: Connection, user: User) -> tuple[str, str]:
    session_id, refresh_token = tokens.new_session_id(), tokens.new_refresh_token()
    await sessions.create_session(
        conn,
        session_id=session_id,
        user_id=user.id,
        refresh_token_hash=tokens.refresh_token_hash(refresh_token),
        expires_at=_refresh_expiry(request),
        user_agent=_printable(request.headers.get("User-Agent", ""))[:_MAX_USER_AGENT] or None,
        client=request.remote,
    )
    return session_id, refresh_token


@routes.post("/login/refresh")
@docs(
    tags=["login"],
    summary="Trade a refresh token for new access and refresh tokens",
    description="The refresh token rotates: the one sent is spent. Presenting a spent one "
    "again is treated as theft: 401, and its whole session ends. Form or JSON body.",
    consumes=["application/json", "application/x-www-form-urlencoded"],
    responses=error_responses(400, 401, 415, 422),
)
@accepts_form_too
@request_schema(RefreshSchema)
@response_schema(TokenSchema, 200, description="New tokens (Cache-Control: no-store)")
async def refresh(request: web.Request) -> web.Response:
    token_hash = tokens.refresh_token_hash(request["data"]["refresh_token"])
    new_token = tokens.new_refresh_token()
    user: User | None = None
    async with request.app[keys.DATABASE].transaction() as conn:
        session = await sessions.by_refresh_hash(conn, token_hash=token_hash)
        if session is None:
            await _end_session_if_replayed(request, conn, token_hash)
        elif session.is_open(time.time()):
            user = await users.get_by_id(conn, user_id=session.user_id)
            if user is not None and user.is_active:
                await sessions.rotate(
                    conn,
                    session_id=session.id,
                    new_hash=tokens.refresh_token_hash(new_token),
                    expires_at=_refresh_expiry(request),
                )
    # Raised after the unit of work, so that ending a replayed session is committed.
    if session is None or user is None:
        raise Unauthorized("invalid_refresh_token")
    if not user.is_active:
        raise BadRequest("inactive_user")
    return _token_response(request, user, session.id, new_token)


async def _end_session_if_replayed(request: web.Request, conn: Connection, token_hash: str) -> None:
    """A spent refresh token presented again means theft: end its session for everyone."""
    replayed = await sessions.session_of_spent_token(conn, token_hash=token_hash)
    if replayed is not None:
        await sessions.end_session_by_id(conn, session_id=replayed)
        logger.bind(request_id=request[keys.REQUEST_ID]).warning(
            "a spent refresh token was presented again; its session ended"
        )


@routes.post("/logout")
@docs(
    tags=["login"],
    summary="Log out: end the current session",
    description="Its access token is refused from the next request on, and its refresh "
    "token no longer refreshes.",
    responses={"204": {"description": "Logged out"}, **error_responses(401, 403)},
)
@requires(Access.USER)
async def logout(request: web.Request) -> web.Response:
    me = current_user(request)
    async with request.app[keys.DATABASE].transaction() as conn:
        await sessions.end_session(
            conn, session_id=current_session(request), user_id=me.id, now=time.time()
        )
    return web.Response(status=204)


@routes.post("/login/test-token")
@docs(
    tags=["login"],
    summary="Check a token: returns its user",
    responses=error_responses(401, 403),
)
@requires(Access.USER)
@response_schema(UserSchema, 200, description="The token's user")
async def test_token(request: web.Request) -> web.Response:
    return json_response(user_json(current_user(request)))


def _token_response(
    request: web.Request, user: User, session_id: str, refresh_token: str
) -> web.Response:
    issued = tokens.issue(
        user_id=user.id,
        token_version=user.token_version,
        session_id=session_id,
        key=request.app[keys.TOKEN_KEY],
        lifetime_seconds=request.app[keys.SETTINGS].access_token_expire_minutes * 60,
    )
    body = {
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "refresh_token": refresh_token,
    }
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _refresh_expiry(request: web.Request) -> float:
    return time.time() + request.app[keys.SETTINGS].refresh_token_expire_days * 86400


async def _authenticate(request: web.Request, username: str, password: str) -> User | None:
    """The user if the password matches; upgrades a hash made with stale parameters."""
    user = None
    if username_problem(username) is None:  # anything else names no one: spare the query
        async with request.app[keys.DATABASE].read() as conn:
            user = await users.get_by_username(conn, username=username)
    hashed = user.hashed_password if user is not None else None
    matches, new_hash = await request.app[keys.PASSWORDS].verify(password, hashed)
    if user is None or not matches:
        return None
    if new_hash is not None:
        async with request.app[keys.DATABASE].transaction() as conn:
            await users.replace_password_hash(
                conn, user_id=user.id, old_hash=user.hashed_password, new_hash=new_hash
            )
    return user


def _printable(header: str) -> str:
    """A header as text we can store: aiohttp keeps undecodable bytes as lone surrogates."""
    return header.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _throttled_name(username: str, key: str) -> str:
    """The name failures are counted under: a username in lower case, anything else keyed.

    Not a username may be a password typed into the wrong field, which must not be stored
    (an HMAC under the signing key, so a stolen table cannot be guessed through offline),
    or hold a NUL, which PostgreSQL cannot store; `#` keeps these apart from usernames.
    """
    if username_problem(username) is None:
        return username.lower()
    typed = username.encode("utf-8", "surrogatepass")
    return "#" + hmac.new(key.encode(), typed, hashlib.sha256).hexdigest()


async def _seconds_locked(
    request: web.Request, conn: Connection, throttle_key: dict[str, str]
) -> float:
    settings = request.app[keys.SETTINGS]
    return await login_failures.seconds_locked(
        conn,
        **throttle_key,
        now=time.time(),
        max_failures=settings.login_max_failures,
        window=settings.login_failure_window_seconds,
    )


async def _record_failure(
    request: web.Request, conn: Connection, throttle_key: dict[str, str]
) -> None:
    window = request.app[keys.SETTINGS].login_failure_window_seconds
    await login_failures.record_failure(conn, **throttle_key, now=time.time(), window=window)


def _refuse_if_locked(wait: float) -> None:
    """429 with Retry-After while the (username, client) pair is locked out."""
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(
            "too_many_login_failures",
            status=429,
            headers={"Retry-After": str(seconds)},
            seconds=seconds,
        )
