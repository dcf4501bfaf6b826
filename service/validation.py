"""The webargs parser behind aiohttp-apispec's validation middleware, made strict.

JSON bodies go through `jsonbody.read_json` (exact decimals, 400 for anything unparseable),
and every validation failure becomes one RequestValidationError (422) whose `errors` map
field names to messages, whatever the location (json, form, querystring).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web
from marshmallow import Schema, ValidationError
from webargs.aiohttpparser import AIOHTTPParser

from service.errors import RequestValidationError
from service.jsonbody import read_json


class StrictParser(AIOHTTPParser):
    """Parses request locations for the validation middleware; raises our errors only."""

    def __init__(self, *, max_body_bytes: int) -> None:
        super().__init__()
        self._max_body_bytes = max_body_bytes

    async def load_json(self, req: web.Request, schema: Schema) -> object:
        return await read_json(req, max_bytes=self._max_body_bytes)

    def handle_error(
        self,
        error: ValidationError,
        req: web.Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        raise RequestValidationError(flatten_messages(error.messages))


def flatten_messages(messages: Any) -> dict[str, list[str]]:
    """`{"json": {"price": [...]}}` -> `{"price": [...]}`; non-field problems -> `_schema`."""
    flat: dict[str, list[str]] = {}
    located = messages.values() if isinstance(messages, dict) else [messages]
    for location_errors in located:
        if isinstance(location_errors, dict):
            for field, field_errors in location_errors.items():
                flat.setdefault(str(field), []).extend(_as_strings(field_errors))
        else:
            flat.setdefault("_schema", []).extend(_as_strings(location_errors))
    return flat


def _as_strings(errors: Any) -> list[str]:
    if isinstance(errors, list):
        return [message for item in errors for message in _as_strings(item)]
    if isinstance(errors, dict):
        return [
            f"{key}: {message}" for key, value in errors.items() for message in _as_strings(value)
        ]
    return [str(errors)]
