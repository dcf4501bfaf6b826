"""Password recovery and email verification: links by email, tokens back."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema

from service import headers, keys, messages
from service.accounts import recovery, verification
from service.auth import Access, current_user, requires
from service.client_address import caller
from service.openapi import error_responses, no_content, response_headers
from service.responses import json_response
from service.schemas.recovery import (
    AcceptedSchema,
    RecoverySchema,
    ResetPasswordSchema,
    VerifyEmailSchema,
)

routes = web.RouteTableDef()

_BODY_ERRORS = (400, 413, 415, 422)


@routes.post("/password-recovery")
@docs(
    tags=["recovery"],
    summary="Ask for a password reset link by email",
    description="Always 202 with the same body, whether or not an active user has the "
    "address (matched ignoring case), so that the answer names no account. Such a user "
    "gets one message (English or Russian, by Accept-Language) with a link to "
    "PUBLIC_URL/reset-password#token=..., at most one per RECOVERY_MIN_INTERVAL_SECONDS. "
    "More than LOGIN_MAX_FAILURES requests for one address, or from one client, within "
    "LOGIN_FAILURE_WINDOW_SECONDS: 429 with Retry-After.",
    responses=error_responses(*_BODY_ERRORS, 429),
)
@request_schema(RecoverySchema)
@response_schema(AcceptedSchema, 202, description="Taken (whether or not the address is known)")
@response_headers(202, "Content-Language", "Vary")
async def password_recovery(request: web.Request) -> web.Response:
    language = _language(request)
    await recovery.request_reset(
        request.app[keys.ACCOUNTS],
        email=request[keys.BODY]["email"],
        language=language,
        caller=caller(request),
    )
    return _accepted("recovery_accepted", language)


@routes.post("/reset-password")
@docs(
    tags=["recovery"],
    summary="Set a new password with the token of a reset link",
    description="The token works once, for RESET_TOKEN_EXPIRE_MINUTES, and dies when the "
    "password changes by any path. Unknown, used, expired or malformed: 400 `Invalid or "
    "expired token`; an inactive user: 400 `Inactive user`. Every session and access token "
    "of the user ends.",
    responses={**no_content("The password changed"), **error_responses(*_BODY_ERRORS)},
)
@request_schema(ResetPasswordSchema)
async def reset_password(request: web.Request) -> web.Response:
    body = request[keys.BODY]
    await recovery.reset_password(
        request.app[keys.ACCOUNTS], token=body["token"], new_password=body["new_password"]
    )
    return web.Response(status=204)


@routes.post("/users/me/verify-email")
@docs(
    tags=["recovery"],
    summary="Send a verification link to the caller's email address",
    description="202: a message with a link to PUBLIC_URL/verify-email#token=... is queued "
    "(at most one per RECOVERY_MIN_INTERVAL_SECONDS; a repeat within it sends nothing "
    "more). 409 if the account has no address or it is already verified.",
    responses=error_responses(401, 403, 409),
)
@requires(Access.USER)
@response_schema(AcceptedSchema, 202, description="The message is queued")
@response_headers(202, "Content-Language", "Vary")
async def request_verification(request: web.Request) -> web.Response:
    language = _language(request)
    await verification.request_verification(
        request.app[keys.ACCOUNTS],
        user_id=current_user(request).id,
        language=language,
    )
    return _accepted("verification_accepted", language)


@routes.post("/verify-email")
@docs(
    tags=["recovery"],
    summary="Verify an email address with the token of a verification link",
    description="The token works once, for VERIFY_TOKEN_EXPIRE_MINUTES, and only while the "
    "address is the one it was sent to. Otherwise 400 `Invalid or expired token`; an "
    "inactive user: 400 `Inactive user`.",
    responses={**no_content("The address is verified"), **error_responses(*_BODY_ERRORS)},
)
@request_schema(VerifyEmailSchema)
async def verify_email(request: web.Request) -> web.Response:
    await verification.verify_email(request.app[keys.ACCOUNTS], token=request[keys.BODY]["token"])
    return web.Response(status=204)


def _accepted(message_key: str, language: messages.Language) -> web.Response:
    return json_response({"detail": messages.render(message_key, language, {})}, status=202)


def _language(request: web.Request) -> messages.Language:
    return headers.answer_language(request)
