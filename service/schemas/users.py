"""User and login payloads. Unknown fields are refused: that is how `is_superuser` sneaks in."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from service.schemas.common import PageQuerySchema
from service.schemas.fields import StrictBoolean, Text

# As documented (JSON Schema dialect); `me` is reserved, in any case.
USERNAME_PATTERN = r"^(?![Mm][Ee]$)[A-Za-z0-9_.-]{2,64}$"
_USERNAME_FULL = r"[A-Za-z0-9_.-]{2,64}\Z"  # re.match: `$` would also pass a trailing newline
USERNAME_RULE = "2-64 characters of A-Z a-z 0-9 _ . -"
RESERVED_USERNAMES = frozenset({"me"})


def username_problem(username: str) -> str | None:
    """Why `username` cannot be a username (format, reserved), or None."""
    if not re.match(_USERNAME_FULL, username):
        return USERNAME_RULE
    if username.lower() in RESERVED_USERNAMES:
        return f"'{username}' is reserved."
    return None


def _username(**kwargs: Any) -> Text:
    return Text(
        validate=validate.Regexp(_USERNAME_FULL, error=USERNAME_RULE),
        metadata={"example": "alice", "pattern": USERNAME_PATTERN},
        **kwargs,
    )


def password_field(**kwargs: Any) -> Text:
    """A new password, with the rules signup checks (8-128 characters)."""
    return _password(**kwargs)


def _password(**kwargs: Any) -> Text:
    return Text(
        validate=validate.Length(min=8, max=128),
        metadata={"example": "correct horse battery", "format": "password"},
        **kwargs,
    )


def _email() -> fields.Email:
    return fields.Email(
        allow_none=True,
        validate=validate.Length(max=254),
        metadata={"example": "alice@example.com"},
    )


def _full_name() -> Text:
    return Text(allow_none=True, validate=validate.Length(max=128), metadata={"example": "Alice"})


class _ChecksUsername(Schema):
    @validates("username")
    def _not_reserved(self, value: str, **_: Any) -> None:
        if value.lower() in RESERVED_USERNAMES:
            raise ValidationError(f"'{value}' is reserved.")


class SignupSchema(_ChecksUsername):
    """A new account: always active, never a superuser."""

    username = _username(required=True)
    password = _password(required=True)
    email = _email()
    full_name = _full_name()


class UserCreateSchema(SignupSchema):
    """A superuser creating an account, flags included."""

    is_active = StrictBoolean(load_default=True)
    is_superuser = StrictBoolean(load_default=False)


class MeUpdateSchema(_ChecksUsername):
    """What a user may change about himself through PATCH /users/me."""

    username = _username()
    email = _email()
    full_name = _full_name()


class PasswordChangeSchema(Schema):
    current_password = Text(required=True, validate=validate.Length(max=1024))
    new_password = _password(required=True)


class UserUpdateSchema(MeUpdateSchema):
    """PATCH /users/{user} (an id): flags for superusers only; own password needs the current."""

    password = _password()
    current_password = Text(validate=validate.Length(max=1024))
    is_active = StrictBoolean()
    is_superuser = StrictBoolean()


class UserSchema(Schema):
    """A user as every route returns it: never a password or a hash."""

    id = fields.Integer(required=True, metadata={"example": 1})
    username = fields.String(required=True, metadata={"example": "alice"})
    email = fields.String(required=True, allow_none=True, metadata={"example": "alice@example.com"})
    full_name = fields.String(required=True, allow_none=True, metadata={"example": "Alice"})
    is_active = fields.Boolean(required=True)
    is_superuser = fields.Boolean(required=True)
    totp_enabled = fields.Boolean(
        required=True, metadata={"description": "Logins need a second factor (TOTP)"}
    )
    created_at = fields.DateTime(required=True, metadata={"example": "2026-11-27T10:00:00+00:00"})
    updated_at = fields.DateTime(required=True, metadata={"example": "2026-11-27T10:00:00+00:00"})


class UserPageSchema(Schema):
    data = fields.List(fields.Nested(UserSchema), required=True)
    count = fields.Integer(required=True, metadata={"example": 1})


class UserListQuerySchema(PageQuerySchema):
    """skip and limit, ordered by id."""


class LoginFormSchema(Schema):
    """OAuth2 password flow form; grant_type, scope and the client fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    username = fields.String(required=True)
    password = fields.String(required=True, metadata={"format": "password"})
    grant_type = fields.String()
    scope = fields.String()
    client_id = fields.String()
    client_secret = fields.String()


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(required=True, metadata={"example": 3600})
    refresh_token = fields.String(
        required=True, metadata={"description": "Opaque; spent by its first use"}
    )


class RefreshSchema(Schema):
    # Any string: a malformed token (empty, 5,000 characters, NUL) is refused with 401 as an
    # unknown one is, so that a client that logs in again on 401 needs no other case.
    refresh_token = fields.String(
        required=True, metadata={"description": "The refresh_token of a login or refresh"}
    )


class SessionSchema(Schema):
    """One of the caller's open sessions: never a token."""

    id = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True)
    user_agent = fields.String(required=True, allow_none=True)
    client = fields.String(required=True, allow_none=True)
    current = fields.Boolean(required=True, metadata={"description": "The caller's own"})


class SessionListSchema(Schema):
    data = fields.List(fields.Nested(SessionSchema), required=True)
    count = fields.Integer(required=True)
