"""What a route declares beside aiohttp-apispec's decorators: its errors, headers, parameters.

Everything here is written in OpenAPI 3.1's shape; service/openapi/document.py adds what
every operation has in common (media types, the headers of every response, security).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from service.errors import PROBLEM_CONTENT_TYPE
from service.schemas.common import ProblemSchema

F = TypeVar("F", bound=Callable[..., Any])


def _one(example: str) -> list[str]:
    # (A literal `["..."]` after a colon reads as a field message to tests/test_messages.py.)
    return [example]


# Headers the service sends, by name, each documented once in components.headers.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID if it is 1-128 letters, digits, `-`, `_`, "
        "`.`; else one the service made. It names the request in the log.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
    },
    "X-Process-Time-ms": {
        "description": "How long the service took, in milliseconds",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "examples": _one("3.57")},
    },
    "ETag": {
        "description": "Strong entity tag of this version; send it back in If-Match or "
        "If-None-Match",
        "required": True,
        "schema": {"type": "string", "examples": ['"1.2"']},
    },
    "Location": {
        "description": "The path of the resource just created",
        "required": True,
        "schema": {"type": "string", "examples": _one("/products/1")},
    },
    # No example value: the fuzzer sends the document's strings back as path segments,
    # and the log scanner (tests/log_hygiene.py) takes "Bearer " in a log line for a token.
    "WWW-Authenticate": {
        "description": "Always `Bearer`: log in at /login/access-token",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": _one("840")},
    },
    "Content-Language": {
        "description": "The language of the answer's texts (a problem's `title`, `detail` "
        "and `errors`): `ru` when Accept-Language prefers Russian, else `en`",
        "required": True,
        "schema": {"type": "string", "enum": ["en", "ru"]},
    },
    "Vary": {
        "description": "Names `Accept-Language`: the answer's texts follow it",
        "required": True,
        "schema": {"type": "string", "pattern": "[Aa]ccept-[Ll]anguage"},
    },
    "Cache-Control": {
        "description": "`no-store`: tokens are never cached",
        "required": True,
        "schema": {"type": "string", "const": "no-store"},
    },
}

# Any text: `*`, or a list of entity tags (RFC 9110; an empty list is valid). A value that
# names no current ETag, malformed or empty included, matches nothing: If-Match then
# answers 412, If-None-Match does not apply.
IF_MATCH: dict[str, Any] = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "The ETag last seen: the change is made only if the resource is still "
    "at that version, else 412 (a lost update prevented); so is any value that names no "
    "current ETag, an empty one included. `*` matches any version.",
    "schema": {"type": "string", "examples": ['"1.2"', "*"]},
}
IF_NONE_MATCH: dict[str, Any] = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "description": "The ETag last seen: 304 without a body while it is still current "
    "(`*`: while the resource exists).",
    "schema": {"type": "string", "examples": ['"1.2"']},
}


def path_id(name: str, description: str) -> dict[str, Any]:
    """A path parameter holding a positive integer id."""
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    }


def path_text(name: str, description: str) -> dict[str, Any]:
    """A path parameter holding one path segment of text."""
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def no_content(description: str) -> dict[str, dict[str, Any]]:
    """A bodiless 204 answer, for a route's @docs(responses=...)."""
    return {"204": {"description": description}}


def error_responses(*statuses: int) -> dict[str, dict[str, Any]]:
    """Documented problem+json responses for `statuses`, for a route's @docs."""
    return {str(status): _problem_response(status) for status in statuses}


def response_headers(status: int, *names: str) -> Callable[[F], F]:
    """Declare headers (names in HEADERS) that a route's `status` answer carries."""
    unknown = set(names) - HEADERS.keys()
    if unknown:
        raise LookupError(f"undocumented headers: {sorted(unknown)}")

    def mark(handler: F) -> F:
        declared = dict(getattr(handler, "__response_headers__", {}))
        declared[str(status)] = (*declared.get(str(status), ()), *names)
        handler.__response_headers__ = declared  # type: ignore[attr-defined]
        return handler

    return mark


def _problem_response(status: int) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    example: dict[str, Any] = {
        "type": "about:blank",
        "title": phrase,
        "status": status,
        "detail": _EXAMPLE_DETAILS.get(status, phrase),
    }
    if status == 422:
        example["errors"] = {"price": ["Must be a JSON number."]}
    return {
        "description": phrase,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": ProblemSchema, "example": example}},
    }


_EXAMPLE_DETAILS = {
    400: "The request body is not valid JSON: Expecting value (line 1, column 1)",
    401: "Could not validate credentials",
    403: "The user doesn't have enough privileges",
    404: "Product 7 not found",
    409: "The user with this username already exists",
    412: "The resource has changed: its ETag no longer matches If-Match",
    413: "The request body is larger than 1048576 bytes",
    415: "Send the body as application/json",
    422: "Request validation failed: price",
    429: "Too many failed login attempts; try again in 840 seconds",
    503: "The service is not ready: migrations pending: 0003.create-sessions",
}
