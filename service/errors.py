"""Domain errors (a status plus a catalogue message) and their problem+json rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar

from aiohttp import web

from service import messages
from service.accounts import errors as account

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error a client should see: HTTP status, a catalogue message and optional extras."""

    status: int = 400
    message_key: str = "http_error"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        message_key: str | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Mapping[str, list[str]] | None = None,
        extensions: Mapping[str, str] | None = None,
        **params: object,
    ) -> None:
        self.message_key = message_key or self.message_key
        self.status = status or self.status
        self.headers = {**self.default_headers, **(headers or {})}
        self.errors = dict(errors) if errors is not None else None
        # RFC 9457 extension members: more top-level members of the problem document.
        self.extensions = dict(extensions or {})
        self.params = params
        super().__init__(self.message_key)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401
    default_headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PreconditionFailed(ApiError):
    status = 412
    message_key = "precondition_failed"


class ServiceUnavailable(ApiError):
    status = 503
    message_key = "not_ready"


class RequestValidationError(ApiError):
    """422 with the failing fields; body-wide problems go under `_schema`."""

    status = 422
    message_key = "validation_failed"

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__(errors=errors, fields=", ".join(sorted(errors)) or "_schema")


# The contract's answer to each refusal of the account rules: a status and a message.
_ACCOUNT_REFUSALS: dict[type[account.AccountError], tuple[type[ApiError], str]] = {
    account.IncorrectLogin: (Unauthorized, "incorrect_login"),
    account.InvalidRefreshToken: (Unauthorized, "invalid_refresh_token"),
    account.InactiveUser: (BadRequest, "inactive_user"),
    account.IncorrectPassword: (BadRequest, "incorrect_password"),
    account.SignupClosed: (Forbidden, "signup_closed"),
    account.NotAllowed: (Forbidden, "not_enough_privileges"),
    account.TwoFactorRequired: (Forbidden, "two_factor_required"),
    account.SelfDeleteRefused: (Forbidden, "superuser_self_delete"),
    account.OwnTotpResetRefused: (Forbidden, "own_totp_reset"),
    account.UserNotFound: (NotFound, "user_not_found"),
    account.SessionNotFound: (NotFound, "session_not_found"),
    account.UsernameTaken: (Conflict, "username_taken"),
    account.LastSuperuser: (Conflict, "last_superuser"),
    account.InvalidAccountToken: (BadRequest, "invalid_account_token"),
    account.NoEmail: (Conflict, "no_email"),
    account.EmailAlreadyVerified: (Conflict, "email_already_verified"),
    account.EmailNotVerified: (Forbidden, "email_not_verified"),
    account.InvalidMfaToken: (Unauthorized, "invalid_mfa_token"),
    account.IncorrectLoginCode: (Unauthorized, "invalid_code"),
    account.InvalidCode: (BadRequest, "invalid_code"),
    account.TotpAlreadyEnabled: (Conflict, "totp_already_enabled"),
    account.TotpNotEnabled: (Conflict, "totp_not_enabled"),
    account.TotpNotPending: (Conflict, "totp_not_pending"),
}


def as_api_error(error: ApiError | account.AccountError) -> ApiError:
    """The answer a client gets: an ApiError as raised, an account refusal as mapped here."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, account.LoginLocked):
        return _too_many("too_many_login_failures", error.seconds)
    if isinstance(error, account.PasswordChecksLocked):
        return _too_many("too_many_wrong_passwords", error.seconds)
    if isinstance(error, account.CodeChecksLocked):
        return _too_many("too_many_wrong_codes", error.seconds)
    if isinstance(error, account.SecondFactorRequired):
        # 403, not 401: the password was right; the client goes on at /login/mfa.
        return Forbidden("second_factor_required", extensions={"mfa_token": error.mfa_token})
    if isinstance(error, account.TooManyRequests):
        return _too_many("too_many_requests", error.seconds)
    if isinstance(error, account.EmailRequired):
        return RequestValidationError({"email": ["Required while email verification is on."]})
    if isinstance(error, account.CurrentPasswordRequired):
        return RequestValidationError(
            {"current_password": ["Required to change your own password."]}
        )
    kind, message_key = _ACCOUNT_REFUSALS[type(error)]
    return kind(message_key)


def problem_response(error: ApiError, language: messages.Language) -> web.Response:
    """Render an ApiError as an RFC 9457 problem document."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": messages.title(error.status, language),
        "status": error.status,
        "detail": messages.render(error.message_key, language, error.params),
    }
    body.update(error.extensions)
    if error.errors is not None:
        body["errors"] = {
            field: [messages.field_message(text, language) for text in texts]
            for field, texts in error.errors.items()
        }
    response = web.Response(
        status=error.status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )
    if error.status in (408, 413):
        # No keep-alive after an unwanted or unfinished body: the connection closes.
        response.force_close()
    return response


def _too_many(kind: str, seconds: int) -> ApiError:
    """429 with Retry-After: a limit on attempts, `seconds` until it lifts."""
    return ApiError(kind, status=429, headers={"Retry-After": str(seconds)}, seconds=seconds)
