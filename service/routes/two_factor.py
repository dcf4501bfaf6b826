"""Two-factor login (TOTP): enrollment and recovery codes, the login's second step, and
the superuser's reset for a user who lost his device and his codes."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema

from service import keys
from service.accounts import second_factor, totp
from service.auth import Access, current_session, current_user, requires
from service.client_address import caller
from service.errors import NotFound
from service.ids import parse_id
from service.metrics.web import counts_login_outcomes
from service.openapi import error_responses, no_content, path_id, response_headers
from service.representations import tokens_json
from service.responses import json_response
from service.schemas.totp import (
    MfaLoginSchema,
    RecoveryCodesSchema,
    TotpCodeSchema,
    TotpConfirmSchema,
    TotpDisableSchema,
    TotpEnrollmentSchema,
    TotpEnrollSchema,
)
from service.schemas.users import TokenSchema
from service.validation import accepts_form_too

routes = web.RouteTableDef()

_BODY_ERRORS = (400, 413, 415, 422)
_WRONG_CODES = (
    " Wrong codes count per user like wrong current passwords: after LOGIN_MAX_FAILURES "
    "of them within LOGIN_FAILURE_WINDOW_SECONDS, 429 with Retry-After and the session "
    "that asked ends."
)
_A_CODE = (
    "`code` is a current TOTP code (one 30 s step either side) or an unused recovery code "
    "(then spent); a code already used is refused."
)


@routes.post("/users/me/totp")
@docs(
    tags=["two-factor"],
    summary="Start enrolling in two-factor login (TOTP)",
    operationId="enroll_totp",
    description="Needs the current password (wrong: 400, counted like a password change's). "
    "Returns a pending secret (RFC 6238: SHA-1, 6 digits, 30 s; issuer TOTP_ISSUER, "
    "account the username) as base32, an otpauth URI and that URI as an SVG QR code. "
    "Nothing changes until /users/me/totp/confirm; calling again replaces a pending "
    "secret. 409 if TOTP is already on.",
    responses=error_responses(*_BODY_ERRORS, 401, 403, 409, 429),
)
@requires(Access.USER)
@request_schema(TotpEnrollSchema)
@response_schema(TotpEnrollmentSchema, 200, description="The pending secret (no-store)")
@response_headers(200, "Cache-Control")
async def enroll_totp(request: web.Request) -> web.Response:
    enrollment = await totp.enroll(
        request.app[keys.ACCOUNTS],
        me=current_user(request),
        session=current_session(request),
        password=request[keys.BODY]["password"],
    )
    body = {
        "secret": enrollment.secret,
        "otpauth_uri": enrollment.otpauth_uri,
        "qr_svg": enrollment.qr_svg,
    }
    return json_response(body)


@routes.post("/users/me/totp/confirm")
@docs(
    tags=["two-factor"],
    summary="Turn two-factor login on with a code from the app",
    operationId="confirm_totp",
    description="A current code of the pending secret turns TOTP on: logins then need a "
    "code after the password, and the caller's other sessions end. Returns ten single-use "
    "recovery codes, shown this once. Wrong code: 400 `Invalid code`. 409: nothing pending, "
    "or TOTP already on." + _WRONG_CODES,
    responses=error_responses(*_BODY_ERRORS, 401, 403, 409, 429),
)
@requires(Access.USER)
@request_schema(TotpConfirmSchema)
@response_schema(RecoveryCodesSchema, 200, description="The recovery codes (no-store)")
@response_headers(200, "Cache-Control")
async def confirm_totp(request: web.Request) -> web.Response:
    codes = await totp.confirm(
        request.app[keys.ACCOUNTS],
        me=current_user(request),
        session=current_session(request),
        code=request[keys.BODY]["code"],
    )
    return json_response({"recovery_codes": codes})


@routes.delete("/users/me/totp")
@docs(
    tags=["two-factor"],
    summary="Turn two-factor login off",
    operationId="disable_totp",
    description="Needs the password (wrong: 400) and a code (wrong: 400 `Invalid code`). "
    + _A_CODE
    + " The recovery codes go too. 409 if TOTP is off."
    + _WRONG_CODES,
    responses={**no_content("Off"), **error_responses(*_BODY_ERRORS, 401, 403, 409, 429)},
)
@requires(Access.USER)
@request_schema(TotpDisableSchema)
async def disable_totp(request: web.Request) -> web.Response:
    body = request[keys.BODY]
    await totp.disable(
        request.app[keys.ACCOUNTS],
        me=current_user(request),
        session=current_session(request),
        password=body["password"],
        code=body["code"],
    )
    return web.Response(status=204)


@routes.post("/users/me/totp/recovery-codes")
@docs(
    tags=["two-factor"],
    summary="Replace the recovery codes",
    operationId="new_recovery_codes",
    description="Ten new single-use codes for a code; the old ones stop working. "
    + _A_CODE
    + " Wrong code: 400 `Invalid code`. 409 if TOTP is off."
    + _WRONG_CODES,
    responses=error_responses(*_BODY_ERRORS, 401, 403, 409, 429),
)
@requires(Access.USER)
@request_schema(TotpCodeSchema)
@response_schema(RecoveryCodesSchema, 200, description="The new recovery codes (no-store)")
@response_headers(200, "Cache-Control")
async def new_recovery_codes(request: web.Request) -> web.Response:
    codes = await totp.new_recovery_codes(
        request.app[keys.ACCOUNTS],
        me=current_user(request),
        session=current_session(request),
        code=request[keys.BODY]["code"],
    )
    return json_response({"recovery_codes": codes})


@routes.delete("/users/{user:[0-9]+}/totp")
@docs(
    tags=["two-factor"],
    summary="Turn a user's two-factor login off (superuser)",
    operationId="reset_user_totp",
    description="For a user who lost both his device and his recovery codes: TOTP off, "
    "recovery codes gone, and every session of his ends. Logged as a warning. Not for the "
    "caller himself (403): his own goes off with DELETE /users/me/totp, password and code.",
    parameters=[path_id("user", "The user's id")],
    responses={**no_content("Off"), **error_responses(401, 403, 404)},
)
@requires(Access.SUPERUSER)
async def reset_user_totp(request: web.Request) -> web.Response:
    user_id = parse_id(request.match_info["user"])
    if user_id is None:
        raise NotFound("user_not_found")
    await totp.reset_for_user(request.app[keys.ACCOUNTS], by=current_user(request), user_id=user_id)
    return web.Response(status=204)


@routes.post("/login/mfa")
@docs(
    tags=["login"],
    summary="Log in, step two: trade the mfa_token and a code for tokens",
    operationId="login_mfa",
    description="When the user has TOTP on, /login/access-token answers the right password "
    "with 403 `Second factor required` and an `mfa_token` (5 minutes, single use) instead "
    "of tokens. Send it here with a code: the login's answer (access and refresh tokens, "
    "a new session). "
    + _A_CODE
    + " Wrong code: 401 `Invalid code`, counted as a failed login (the login throttle "
    "applies: 429 with Retry-After); after 5 wrong codes the mfa_token is dead. An "
    "unknown, expired, used or dead mfa_token, or one issued before the password changed: "
    "401. Form or JSON body.",
    responses=error_responses(*_BODY_ERRORS, 401, 429),
)
@accepts_form_too
@request_schema(MfaLoginSchema)
@response_schema(TokenSchema, 200, description="A bearer token (Cache-Control: no-store)")
@response_headers(200, "Cache-Control")
@counts_login_outcomes
async def login_mfa(request: web.Request) -> web.Response:
    body = request[keys.BODY]
    issued = await second_factor.complete_login(
        request.app[keys.ACCOUNTS],
        mfa_token=body["mfa_token"],
        code=body["code"],
        caller=caller(request),
    )
    return json_response(tokens_json(issued))
