"""Strict JSON request bodies: exact numbers, and a 400 (never a 500) for anything unparseable."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from aiohttp import web

from service.errors import ApiError, BadRequest, RequestValidationError

# Longer number literals are refused before Python converts them (thousands of digits
# would cost CPU, and integers over 4,300 digits raise).
MAX_NUMBER_CHARS = 40
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NumberTooLong(ValueError):
    pass


class _NotANumber(ValueError):
    pass


async def read_json(request: web.Request, *, max_bytes: int) -> object:
    """The request's JSON body, with floats parsed as Decimal."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError("body_too_large", status=413, limit=max_bytes)
    if not request.body_exists:
        raise RequestValidationError({"_schema": ["A JSON request body is required."]})
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise ApiError("unsupported_media_type", status=415, expected="application/json")
    raw = await request.read()
    if not raw.strip():
        raise RequestValidationError({"_schema": ["A JSON request body is required."]})
    return decode_json(raw)


def decode_json(raw: bytes) -> object:
    """Parse `raw` as UTF-8 JSON; every failure is a BadRequest naming the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid_json", reason="it is not valid UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_float=_parse_decimal,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
    except RecursionError:
        raise BadRequest("invalid_json", reason="it is nested too deeply") from None
    except _NumberTooLong:
        raise BadRequest(
            "invalid_json", reason=f"a number is longer than {MAX_NUMBER_CHARS} characters"
        ) from None
    except _NotANumber:
        raise BadRequest("invalid_json", reason="NaN and Infinity are not JSON") from None
    except json.JSONDecodeError as error:
        raise BadRequest(
            "invalid_json", reason=f"{error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise BadRequest("invalid_json", reason="it contains an unpaired UTF-16 surrogate")
    return value


def _parse_decimal(literal: str) -> Decimal:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(literal[:10])
    return Decimal(literal)


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(literal[:10])
    return int(literal)


def _reject_constant(literal: str) -> None:
    raise _NotANumber(literal)


def _has_lone_surrogate(value: object) -> bool:
    # Iterative: the value may be nested as deeply as json allowed.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
