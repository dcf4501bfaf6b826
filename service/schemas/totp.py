"""Two-factor (TOTP) payloads: enrollment, codes, the login's second step."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.schemas.fields import Text

_CODE = {
    "description": "A current 6-digit TOTP code, or an unused recovery code (xxxxx-xxxxx)",
    "example": "123456",
}


def _code() -> Text:
    return Text(required=True, validate=validate.Length(min=1, max=64), metadata=_CODE)


class TotpEnrollSchema(Schema):
    password = Text(required=True, validate=validate.Length(max=1024))


class TotpEnrollmentSchema(Schema):
    secret = fields.String(
        required=True, metadata={"description": "Base32, to type into an app by hand"}
    )
    otpauth_uri = fields.String(
        required=True,
        metadata={"example": "otpauth://totp/Products:alice?secret=JBSWY3DP&issuer=Products"},
    )
    qr_svg = fields.String(
        required=True, metadata={"description": "The otpauth URI as a QR code (SVG text)"}
    )


class TotpConfirmSchema(Schema):
    code = Text(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "A current 6-digit code from the app", "example": "123456"},
    )


class TotpCodeSchema(Schema):
    code = _code()


class TotpDisableSchema(Schema):
    password = Text(required=True, validate=validate.Length(max=1024))
    code = _code()


class RecoveryCodesSchema(Schema):
    recovery_codes = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Ten single-use codes, shown this once"},
    )


class MfaLoginSchema(Schema):
    mfa_token = Text(
        required=True,
        validate=validate.Length(min=1, max=512),
        metadata={"description": "From the login's 403 `Second factor required`"},
    )
    code = _code()
