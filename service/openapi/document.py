"""The OpenAPI 3.1 document, built from what the routes declare.

The declarations are aiohttp-apispec's decorators (@docs, @request_schema,
@querystring_schema, @form_schema, @response_schema) plus service/openapi/declare.py and
@requires; apispec's MarshmallowPlugin turns the marshmallow schemas into JSON Schema
(nullable fields as `["string", "null"]`). aiohttp-apispec's own builder stops at 3.0.3
and writes request bodies as Swagger 2.0 `in: body` parameters, so the walk over the
routes is ours; it reads the declarations and never changes them, so one process can
build several apps.

What every operation gets here, whoever writes the route:
- `operationId`: the @docs(operationId=...) given, else the handler's name;
- `requestBody` (required: a missing body is 422) in the media types the route parses:
  `application/json`, `application/x-www-form-urlencoded` for a form;
- each response's media type: `application/json` for a success with a body,
  `application/problem+json` for an error; a 204 has none;
- `X-Request-ID` and `X-Process-Time-ms` on every response, `Content-Language` and `Vary`
  on every error (its texts follow Accept-Language), `WWW-Authenticate` on 401,
  `Retry-After` on 429 and 503, the headers of @response_headers;
- `security` from @requires (401 and 403 documented), `security: []` on public routes;
- a field with metadata `x-enum-name` (and `x-enum-varnames`) becomes a named schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, common

from service.auth import Access, effective_access
from service.errors import PROBLEM_CONTENT_TYPE
from service.openapi.declare import HEADERS, error_responses
from service.settings import Settings

OPENAPI_VERSION = "3.1.0"
TITLE = "Products and accounts API"
VERSION = "1.0.0"
TOKEN_URL = "/login/access-token"  # noqa: S105 - a path, not a password
SECURITY: list[dict[str, list[str]]] = [{"OAuth2Password": []}, {"BearerToken": []}]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
DESCRIPTION = """\
A rebuild of the FastAPI workshop backend: products, users, JWT login.

* Collection routes answer with and without the trailing slash (`/products/` as in the
  original system, `/products` as documented here).
* Every error is `application/problem+json` (RFC 9457) with a human-readable `detail`;
  422 adds `errors` per field. Send `Accept-Language: ru` for Russian texts.
* Every response carries `X-Request-ID`, `X-Process-Time-ms` and
  `X-Content-Type-Options: nosniff`; answers about users, sessions and tokens carry
  `Cache-Control: no-store`.
* Prices are JSON numbers with at most 2 decimals, stored exactly.
* `/users/{user}` is one path for two kinds of key: GET reads it as a username (which may
  be all digits), PATCH and DELETE as the user's id (anything else is 404).
* Two-factor login: for a user with TOTP on, `/login/access-token` answers the right
  password with 403 `Second factor required` and an `mfa_token`; `/login/mfa` trades it
  and a code for the tokens.

The conventions (errors, paging, ETags, sessions, throttling) are in docs/API.md.
"""
TAGS = [
    {"name": "login", "description": "Log in (OAuth2 password flow), refresh, log out"},
    {"name": "users", "description": "Signup, your own account and sessions, administration"},
    {"name": "two-factor", "description": "Two-factor login (TOTP) and recovery codes"},
    {"name": "products", "description": "The product catalogue; writes as configured"},
    {"name": "health", "description": "Liveness and readiness probes"},
]
_DOCS_ONLY = ("schemas", "responses", "parameters", "produces", "consumes")


def build_document(app: web.Application, settings: Settings) -> dict[str, Any]:
    """The document for every documented route of `app`, as /openapi.json serves it."""
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        servers=[{"url": "/", "description": "The service that serves this document"}],
        tags=TAGS,
    )
    spec.components.security_scheme("OAuth2Password", _OAUTH2)
    spec.components.security_scheme("BearerToken", _BEARER)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for path, method, handler in _documented_routes(app):
        access = effective_access(handler, settings.product_write_access)
        spec.path(path=path, operations={method: _operation(handler, access)})
    document = spec.to_dict()
    _name_enums(document)
    return document


def schema_name(schema: Any) -> str:
    """`ProductCreateSchema` -> `ProductCreate`, as aiohttp-apispec named them."""
    resolved: Any = common.resolve_schema_cls(schema)
    name: str = resolved.__name__
    return name.removesuffix("Schema") or name


def _documented_routes(app: web.Application) -> Iterator[tuple[str, str, Any]]:
    for route in app.router.routes():
        method = route.method.lower()
        handler = route.handler
        # aiohttp adds HEAD to every GET route; documenting it twice only adds noise.
        if method in HTTP_METHODS and hasattr(handler, "__apispec__") and route.resource:
            yield _documented_path(route.resource.canonical), method, handler


def _documented_path(path: str) -> str:
    """A collection route (`/products/`) as linters want it: `/products`; both are served."""
    return path.rstrip("/") if len(path) > 1 else path


def _operation(handler: Any, access: Access) -> dict[str, Any]:
    declared = handler.__apispec__
    operation = {k: _copy(v) for k, v in declared.items() if k not in _DOCS_ONLY}
    operation.setdefault("operationId", handler.__name__)
    parameters = _copy(declared["parameters"])
    bodies: dict[str, Any] = {}
    for entry in declared["schemas"]:
        location, schema = entry["location"], entry["schema"]
        if location in ("query", "querystring"):
            parameters.append({"in": "query", "schema": schema})
        elif location == "form":
            bodies[FORM] = {"schema": schema}
        elif location == "json":
            bodies[JSON] = {"schema": schema}
            if getattr(handler, "__form_too__", False):
                bodies[FORM] = {"schema": schema}
    if parameters:
        operation["parameters"] = parameters
    if bodies:
        # The validation middleware answers a missing body 422 (`{}` is the empty update).
        operation["requestBody"] = {"required": True, "content": bodies}
    responses = _copy(declared["responses"])
    if access is Access.PUBLIC:
        operation["security"] = []
    else:
        operation["security"] = SECURITY
        responses = {**error_responses(401, 403), **responses}
    extra_headers = getattr(handler, "__response_headers__", {})
    operation["responses"] = {
        status: _response(int(status), response, extra_headers.get(status, ()))
        for status, response in sorted(responses.items())
    }
    return operation


def _response(status: int, declared: dict[str, Any], extra: tuple[str, ...]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": declared.get("description") or HTTPStatus(status).phrase
    }
    if "schema" in declared:  # @response_schema's form: the media type follows the status
        media = JSON if status < 400 else PROBLEM_CONTENT_TYPE
        response["content"] = {media: {"schema": declared["schema"]}}
    elif "content" in declared:
        response["content"] = declared["content"]
    names = ["X-Request-ID", "X-Process-Time-ms", *_STATUS_HEADERS.get(status, ()), *extra]
    if status >= 400:
        names += _LANGUAGE_HEADERS
    headers: dict[str, Any] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    if status == 503:  # only when the database does not answer: not on every 503
        headers["Retry-After"] = {**HEADERS["Retry-After"], "required": False}
    response["headers"] = {**headers, **declared.get("headers", {})}
    return response


_STATUS_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",)}
_LANGUAGE_HEADERS = ["Content-Language", "Vary"]


def _name_enums(document: dict[str, Any]) -> None:
    """Hoist each schema marked `x-enum-name` into components.schemas, referenced by name."""
    named = document["components"].setdefault("schemas", {})
    for node in _walk(document):
        name = node.pop("x-enum-name", None)
        if name is None:
            continue
        enum = {k: node.pop(k) for k in ("type", "enum", "x-enum-varnames") if k in node}
        named[name] = enum
        node["$ref"] = f"#/components/schemas/{name}"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _copy(value: Any) -> Any:
    """Dicts and lists copied (apispec resolves schemas in place), anything else shared."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


_OAUTH2 = {
    "type": "oauth2",
    "description": "Log in with a username and password (Swagger UI: Authorize).",
    "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
}
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "The access_token of POST /login/access-token or /login/refresh.",
}
