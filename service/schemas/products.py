"""Product payloads: name, price and in_stock (the original system's fields) plus description."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from service.queries.products import SORT_ORDERS
from service.schemas.common import PageQuerySchema
from service.schemas.fields import Price, QueryBoolean, QueryPrice, StrictBoolean, Text


def _name(*, required: bool) -> Text:
    return Text(
        required=required, validate=validate.Length(min=2, max=128), metadata={"example": "Tea"}
    )


def _description(**kwargs: object) -> Text:
    return Text(
        allow_none=True,
        validate=validate.Length(max=5000),
        metadata={"example": "Green, loose leaf"},
        **kwargs,
    )


_PRICE_DOC = "A number >= 0 with at most 2 decimal places, stored exactly"


class ProductCreateSchema(Schema):
    """A new product. Unknown fields are refused."""

    name = _name(required=True)
    price = Price(required=True, attribute="price_cents", metadata={"description": _PRICE_DOC})
    in_stock = StrictBoolean(load_default=True, metadata={"example": True})
    description = _description()


class ProductUpdateSchema(Schema):
    """The fields to change; the ones not sent keep their values."""

    name = _name(required=False)
    price = Price(attribute="price_cents", metadata={"description": _PRICE_DOC})
    in_stock = StrictBoolean(metadata={"example": False})
    description = _description()


class ProductSchema(Schema):
    """A product as every route returns it."""

    id = fields.Integer(required=True, metadata={"example": 1})
    name = fields.String(required=True, metadata={"example": "Tea"})
    price = fields.Float(required=True, metadata={"example": 4.5})
    in_stock = fields.Boolean(required=True, metadata={"example": True})
    description = fields.String(required=True, allow_none=True, metadata={"example": "Green"})
    created_at = fields.DateTime(required=True, metadata={"example": "2026-11-27T10:00:00+00:00"})
    updated_at = fields.DateTime(required=True, metadata={"example": "2026-11-27T10:00:00+00:00"})


class ProductPageSchema(Schema):
    """One page of products and how many match the filters in all."""

    data = fields.List(fields.Nested(ProductSchema), required=True)
    count = fields.Integer(required=True, metadata={"example": 1})


def _sort_varname(order: str) -> str:
    """`-price` -> `PRICE_DESC`: a name a generated client can give the variant."""
    return order.lstrip("-").upper() + ("_DESC" if order.startswith("-") else "_ASC")


class ProductListQuerySchema(PageQuerySchema):
    """Filters and order for the product list."""

    q = Text(
        validate=validate.Length(max=128),
        metadata={"description": "Case-insensitive substring of the name (any script)"},
    )
    min_price = QueryPrice(attribute="min_price_cents", metadata={"description": "Inclusive"})
    max_price = QueryPrice(attribute="max_price_cents", metadata={"description": "Inclusive"})
    in_stock = QueryBoolean(metadata={"description": "true or false"})
    sort = fields.String(
        load_default="id",
        validate=validate.OneOf(list(SORT_ORDERS)),
        metadata={
            "description": "id, name, price; a leading - reverses. Ties by id.",
            # A named enum (service/openapi/document.py), for generated clients' types.
            "x-enum-name": "ProductSort",
            "x-enum-varnames": [_sort_varname(order) for order in SORT_ORDERS],
        },
    )
