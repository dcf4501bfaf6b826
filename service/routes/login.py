"""Login (OAuth2 password flow), token check, refresh-token rotation and logout."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, form_schema, request_schema, response_schema

from service import keys
from service.accounts import login, sessions
from service.auth import Access, current_session, current_user, requires
from service.client_address import caller
from service.metrics.web import counts_login_outcomes
from service.openapi import error_responses, no_content, response_headers
from service.representations import tokens_json, user_json
from service.responses import json_response
from service.schemas.users import LoginFormSchema, RefreshSchema, TokenSchema, UserSchema
from service.validation import accepts_form_too

routes = web.RouteTableDef()


@routes.post("/login/access-token")
@docs(
    tags=["login"],
    summary="Log in: trade a username and password for an access token",
    operationId="login",
    description="OAuth2 password flow (form fields; `grant_type` and `scope` are ignored). "
    "Unknown user and wrong password get the same 401. After LOGIN_MAX_FAILURES failures "
    "for one username from one address (an IPv6 /64; behind FORWARDED_ALLOW_IPS, the "
    "forwarded client) within LOGIN_FAILURE_WINDOW_SECONDS: 429 with Retry-After, even "
    "with the right password, until the window passes. Past twice LOGIN_MAX_FAILURES "
    "failures of one account from any addresses, each further failure makes the account wait "
    "1, 2, 4, ... s (at most LOGIN_ACCOUNT_MAX_DELAY_SECONDS): 429 with Retry-After "
    "meanwhile. A login whose "
    "user's password changed, or who was deactivated, while the password was being checked "
    "gets 401 too. A user with two-factor login on gets, for the right password, 403 "
    "`Second factor required` with an `mfa_token` member (no tokens, no session): send it "
    "with a code to /login/mfa.",
    responses=error_responses(400, 401, 403, 415, 422, 429),
)
@form_schema(LoginFormSchema)
@response_schema(TokenSchema, 200, description="A bearer token (Cache-Control: no-store)")
@response_headers(200, "Cache-Control")
@counts_login_outcomes
async def login_access_token(request: web.Request) -> web.Response:
    form = request[keys.FORM]
    issued = await login.log_in(
        request.app[keys.ACCOUNTS],
        username=form["username"],
        password=form["password"],
        caller=caller(request),
    )
    return json_response(tokens_json(issued))  # no-store: service/headers.py


@routes.post("/login/refresh")
@docs(
    tags=["login"],
    summary="Trade a refresh token for new access and refresh tokens",
    operationId="refresh_token",
    description="The refresh token rotates: the one sent is spent. Presenting the one "
    "spent last again is treated as theft: 401, and its whole session ends (older spent "
    "ones: 401). A session lasts at most SESSION_MAX_AGE_DAYS from its login: after that, "
    "401. Any malformed refresh token (empty, too long, not one the service issued) is 401 "
    "like an unknown one; a `refresh_token` that is not a string: 422. Form or JSON body.",
    responses=error_responses(400, 401, 415, 422),
)
@accepts_form_too
@request_schema(RefreshSchema)
@response_schema(TokenSchema, 200, description="New tokens (Cache-Control: no-store)")
@response_headers(200, "Cache-Control")
async def refresh(request: web.Request) -> web.Response:
    issued = await sessions.refresh(
        request.app[keys.ACCOUNTS],
        refresh_token=request[keys.BODY]["refresh_token"],
    )
    return json_response(tokens_json(issued))  # no-store: service/headers.py


@routes.post("/logout")
@docs(
    tags=["login"],
    summary="Log out: end the current session",
    description="Its access token is refused from the next request on, and its refresh "
    "token no longer refreshes.",
    responses={**no_content("Logged out"), **error_responses(401, 403)},
)
@requires(Access.USER)
async def logout(request: web.Request) -> web.Response:
    await sessions.log_out(
        request.app[keys.ACCOUNTS],
        user_id=current_user(request).id,
        session_id=current_session(request),
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
