"""Request validation against the schemas routes declare with aiohttp-apispec's decorators.

Our own middleware rather than aiohttp-apispec's: that one stores an empty body (`{}`)
as `[]`. Each declared schema is parsed by a strict webargs parser: JSON bodies go
through `jsonbody.read_json` (exact decimals, 400 for anything unparseable), and every
validation failure becomes one RequestValidationError (422) whose `errors` map field
names to messages, whatever the location (json, form, querystring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from marshmallow import Schema, ValidationError
from webargs.aiohttpparser import AIOHTTPParser

from service import keys
from service.errors import ApiError, BadRequest, RequestValidationError
from service.jsonbody import read_json

F = TypeVar("F", bound=Callable[..., Any])
_FORM_TYPES = ("application/x-www-form-urlencoded",)
# Where each parsed schema goes, by the `put_into` of aiohttp-apispec's decorator:
# request_schema has none, querystring_schema and form_schema name their location.
_PARSED_INTO = {None: keys.BODY, "querystring": keys.QUERY, "form": keys.FORM}


def validate_requests(*, max_body_bytes: int) -> Middleware:
    """Parse every schema the matched handler declared, before the handler runs."""
    parser = StrictParser(max_body_bytes=max_body_bytes)

    @web.middleware
    async def validate(request: web.Request, handler: Handler) -> web.StreamResponse:
        handler_declared = request.match_info.handler
        form_too = getattr(handler_declared, "__form_too__", False)
        for declared in getattr(handler_declared, "__schemas__", ()):
            location = declared["location"]
            if form_too and location == "json":
                location = "json_or_form"
            parsed = await parser.parse(
                declared["schema"], request, location=location, unknown=None
            )
            request[_parsed_into(declared["put_into"])] = parsed
        return await handler(request)

    return validate


def _parsed_into(put_into: str | None) -> web.RequestKey[dict[str, Any]]:
    try:
        return _PARSED_INTO[put_into]
    except KeyError:  # a decorator we have no typed key for: a programming error
        raise LookupError(f"no request key for parsed input put into {put_into!r}") from None


def accepts_form_too(handler: F) -> F:
    """Let a route's JSON body arrive as a urlencoded form as well (OAuth2 style)."""
    handler.__form_too__ = True  # type: ignore[attr-defined]
    return handler


class StrictParser(AIOHTTPParser):
    """Parses request locations for the validation middleware; raises our errors only."""

    def __init__(self, *, max_body_bytes: int) -> None:
        super().__init__()
        self._max_body_bytes = max_body_bytes

    async def load_json(self, req: web.Request, schema: Schema) -> object:
        return await read_json(req, max_bytes=self._max_body_bytes)

    async def load_form(self, req: web.Request, schema: Schema) -> Any:
        """An urlencoded UTF-8 form only; anything unreadable is a 400, never a 500.

        (A multipart parser error would even carry body text, passwords included, into a
        logged traceback.)
        """
        if req.content_type != "application/x-www-form-urlencoded":
            raise ApiError(
                "unsupported_media_type", status=415, expected="application/x-www-form-urlencoded"
            )
        if req.charset not in (None, "utf-8", "UTF-8"):
            raise BadRequest("invalid_form", reason="only UTF-8 is accepted")
        try:
            return await super().load_form(req, schema)
        except ValueError:  # UnicodeDecodeError included
            raise BadRequest("invalid_form", reason="it is not UTF-8 urlencoded text") from None

    async def load_json_or_form(self, req: web.Request, schema: Schema) -> Any:
        if req.content_type in _FORM_TYPES:
            return await self.load_form(req, schema)
        return await self.load_json(req, schema)

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
