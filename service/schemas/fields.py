"""Strict marshmallow fields: no coercion of `"5"`, `5.5`, `"yes"` or `"12"`, exact prices."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError, fields

MAX_PRICE_CENTS = 99_999_999_999_999  # 999,999,999,999.99
_MAX_PRICE = Decimal(MAX_PRICE_CENTS) / 100
_CENT = Decimal("0.01")
# Unpaired surrogates cannot be encoded for SQLite; NUL ends a string for SQLite's text
# functions (length() in the CHECK constraints, instr() in search), so both are refused.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_QUERY_INTEGER = re.compile(r"-?[0-9]{1,19}")  # a sign, so that -1 is "out of range"
_QUERY_PRICE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")


# The document's form of _UNSTORABLE: a JSON client cannot send unpaired surrogates in
# valid UTF-8, but it can send NUL (`\u0000`), which is refused.
TEXT_PATTERN = r"^[^\x00]*$"


class Text(fields.String):
    """A string that SQLite can store and compare: no unpaired surrogates, no NUL."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": TEXT_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _UNSTORABLE.search(text):
            raise ValidationError("Must be Unicode text without NUL or unpaired surrogates.")
        return text


class StrictInteger(fields.Integer):
    """A JSON integer: not a bool, not a float such as 5.5, not a string."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing else."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryInteger(fields.Integer):
    """A query parameter of plain ASCII digits: not `+5`, `1_0`, ` 5 ` or `٥`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not _QUERY_INTEGER.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class QueryBoolean(fields.Boolean):
    """A query parameter spelled `true` or `false`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value == "true":
            return True
        if value == "false":
            return False
        raise ValidationError("Must be true or false.")


class Price(fields.Field[int]):
    """A price as a JSON number, at most 2 decimals, 0 to 999,999,999,999.99; loads as cents.

    Dumps cents back as a JSON number: up to 14 significant digits round-trip exactly
    through a float's shortest representation, so 0.3 is written as 0.3.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_PRICE_CENTS / 100,
            "multipleOf": 0.01,  # at most 2 decimal places
            "example": 4.5,
        }
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise ValidationError("Must be a JSON number.")
        return _to_cents(Decimal(value))

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> float | None:
        return None if value is None else value / 100


class QueryPrice(fields.Field[int]):
    """A price in a query string, such as `4.5`; loads as cents."""

    def __init__(self, **kwargs: Any) -> None:
        # Documented as the text it must be, not as a number: `1e2`, `+5` and `5.` are
        # numbers too, and are refused.
        metadata = {"type": "string", "pattern": f"^{_QUERY_PRICE.pattern}$"}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not _QUERY_PRICE.fullmatch(value):
            raise ValidationError("Must be a number >= 0 with at most 2 decimals.")
        return _to_cents(Decimal(value))


def _to_cents(amount: Decimal) -> int:
    # Comparisons between Decimals are exact; arithmetic would round to 28 digits.
    if not amount.is_finite() or amount < 0 or amount > _MAX_PRICE:
        raise ValidationError("Must be from 0 to 999999999999.99.")
    try:
        cents = amount.quantize(_CENT)
    except InvalidOperation:
        raise ValidationError("Must be a number.") from None
    if cents != amount:
        raise ValidationError("Must have at most 2 decimal places.")
    return int(cents * 100)
