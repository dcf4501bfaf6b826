"""Password recovery and email verification payloads."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.schemas.users import password_field

_TOKEN = {"description": "The token from the emailed link (after `#token=`)"}


def _token() -> fields.String:
    # Not Text: a token with a NUL is a malformed token (400), not a malformed body (422).
    return fields.String(required=True, validate=validate.Length(min=1, max=512), metadata=_TOKEN)


class RecoverySchema(Schema):
    email = fields.Email(
        required=True, validate=validate.Length(max=254), metadata={"example": "alice@example.com"}
    )


class ResetPasswordSchema(Schema):
    token = _token()
    new_password = password_field(required=True)


class VerifyEmailSchema(Schema):
    token = _token()


class AcceptedSchema(Schema):
    """A request taken: its message is in the outbox."""

    detail = fields.String(required=True)
