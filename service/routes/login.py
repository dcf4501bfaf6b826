"""Login (OAuth2 password flow) and token check."""

from __future__ import annotations

import math
import time

from aiohttp import web
from aiohttp_apispec import docs, form_schema, response_schema
from loguru import logger

from service import keys, log, tokens
from service.auth import Access, current_user, requires
from service.errors import ApiError, BadRequest, Unauthorized
from service.openapi import error_responses
from service.queries import login_failures, users
from service.queries.users import User
from service.responses import json_response
from service.routes.users import user_json
from service.schemas.users import LoginFormSchema, TokenSchema, UserSchema

routes = web.RouteTableDef()

_MAX_KEY_CHARS = 128  # throttling key: longer usernames cannot exist anyway


@routes.post("/login/access-token")
@docs(
    tags=["login"],
    summary="Log in: trade a username and password for an access token",
    description="OAuth2 password flow (form fields; `grant_type` and `scope` are ignored). "
    "Unknown user and wrong password get the same 401. After LOGIN_MAX_FAILURES failures "
    "for one username from one address within LOGIN_FAILURE_WINDOW_SECONDS: 429 with "
    "Retry-After, even with the right password, until the window passes.",
    consumes=["application/x-www-form-urlencoded"],
    responses=error_responses(400, 401, 422, 429),
)
@form_schema(LoginFormSchema)
@response_schema(TokenSchema, 200, description="A bearer token (Cache-Control: no-store)")
async def login_access_token(request: web.Request) -> web.Response:
    form = request["form"]
    username, password = form["username"], form["password"]
    throttle_key = {"username": username.lower()[:_MAX_KEY_CHARS], "client": request.remote or ""}
    await _refuse_if_throttled(request, throttle_key)
    user = await _authenticate(request, username, password)
    if user is None:
        await _record_failure(request, throttle_key)
        logger.bind(request_id=request[keys.REQUEST_ID]).warning(
            f"failed login for {log.escape(username[:_MAX_KEY_CHARS])!r}"
        )
        raise Unauthorized("incorrect_login")
    async with request.app[keys.DATABASE].transaction() as conn:
        await login_failures.clear_failures(conn, **throttle_key)
    if not user.is_active:
        raise BadRequest("inactive_user")
    settings = request.app[keys.SETTINGS]
    issued = tokens.issue(
        user_id=user.id,
        token_version=user.token_version,
        key=request.app[keys.TOKEN_KEY],
        lifetime_seconds=settings.access_token_expire_minutes * 60,
    )
    return json_response(
        {"access_token": issued.token, "token_type": "bearer", "expires_in": issued.expires_in},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


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


async def _authenticate(request: web.Request, username: str, password: str) -> User | None:
    """The user if the password matches; upgrades a hash made with stale parameters."""
    async with request.app[keys.DATABASE].read() as conn:
        user = await users.get_by_username(conn, username=username)
    hashed = user.hashed_password if user is not None else None
    matches, new_hash = await request.app[keys.PASSWORDS].verify(password, hashed)
    if user is None or not matches:
        return None
    if new_hash is not None:
        async with request.app[keys.DATABASE].transaction() as conn:
            await users.replace_password_hash(conn, user_id=user.id, hashed_password=new_hash)
    return user


async def _refuse_if_throttled(request: web.Request, throttle_key: dict[str, str]) -> None:
    settings = request.app[keys.SETTINGS]
    async with request.app[keys.DATABASE].read() as conn:
        wait = await login_failures.seconds_locked(
            conn,
            **throttle_key,
            now=time.time(),
            max_failures=settings.login_max_failures,
            window=settings.login_failure_window_seconds,
        )
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(
            "too_many_login_failures",
            status=429,
            headers={"Retry-After": str(seconds)},
            seconds=seconds,
        )


async def _record_failure(request: web.Request, throttle_key: dict[str, str]) -> None:
    window = request.app[keys.SETTINGS].login_failure_window_seconds
    async with request.app[keys.DATABASE].transaction() as conn:
        now = time.time()
        await login_failures.record_failure(conn, **throttle_key, now=now, window=window)
        await login_failures.purge_expired(conn, now=now, window=window)
