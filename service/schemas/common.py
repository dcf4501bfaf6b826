"""Schemas shared by every resource: the problem document and pagination."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from service.ids import MAX_SQL_INTEGER
from service.schemas.fields import QueryInteger

MAX_PAGE_SIZE = 1000


class ProblemSchema(Schema):
    """An RFC 9457 problem document, as every error is answered."""

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True, metadata={"example": "Not Found"})
    status = fields.Integer(required=True, metadata={"example": 404})
    detail = fields.String(required=True, metadata={"example": "Product 7 not found"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "422 only: messages per field; `_schema` for the body as a whole"},
    )
    mfa_token = fields.String(
        metadata={
            "description": "A login's 403 `Second factor required` only: send it with a "
            "code to /login/mfa within 5 minutes (single use)"
        }
    )


class PageQuerySchema(Schema):
    """`skip` and `limit` for every list route."""

    class Meta:
        unknown = EXCLUDE  # other query parameters (cache busters) are ignored

    skip = QueryInteger(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_SQL_INTEGER),
        metadata={"description": "How many items to skip"},
    )
    limit = QueryInteger(
        load_default=100,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}"},
    )
