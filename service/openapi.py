"""The API document (Swagger 2.0 from aiohttp-apispec), the Swagger UI and ReDoc pages."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_apispec import setup_aiohttp_apispec

from service.auth import Access, effective_access
from service.errors import PROBLEM_CONTENT_TYPE
from service.schemas.common import ProblemSchema
from service.settings import Settings

TITLE = "Products and accounts API"
VERSION = "1.0.0"
SPEC_PATH = "/openapi.json"
SECURITY_SCHEME = "OAuth2PasswordBearer"
STATIC_DIR = Path(__file__).resolve().parent / "static"
DESCRIPTION = """\
A rebuild of the FastAPI workshop backend: products, users, JWT login.

* Collection routes answer with and without the trailing slash.
* Every error is `application/problem+json` (RFC 9457) with a human-readable `detail`;
  422 adds `errors` per field. Send `Accept-Language: ru` for Russian texts.
* Every response carries `X-Request-ID`, `X-Process-Time-ms` and
  `X-Content-Type-Options: nosniff`; answers about users, sessions and tokens carry
  `Cache-Control: no-store`.
* Prices are JSON numbers with at most 2 decimals, stored exactly.
"""


def error_responses(*statuses: int) -> dict[str, dict[str, Any]]:
    """Documented problem+json responses for `statuses`, for a route's @docs."""
    return {str(status): _problem_response(status) for status in statuses}


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
        "schema": ProblemSchema,
        "examples": {"application/problem+json": example},
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


def setup_openapi(app: web.Application, settings: Settings) -> None:
    """Build the document from the routes added so far and serve /docs and /redoc."""
    originals = _prepare_handler_docs(app, settings)
    try:
        _build(app)
    finally:
        for handler, original in originals.items():
            handler.__apispec__ = original
    app.router.add_get("/redoc", _redoc_page)
    app.router.add_static("/static/redoc", STATIC_DIR / "redoc", name="redoc.static")


def _prepare_handler_docs(app: web.Application, settings: Settings) -> dict[Any, dict[str, Any]]:
    """Give each handler a private copy of its docs, with the security its access needs.

    aiohttp-apispec consumes the `__apispec__` dict it registers (it pops the schemas), so
    a second app in one process would lose them: it gets a copy, and the original is kept.
    """
    originals: dict[Any, dict[str, Any]] = {}
    for route in app.router.routes():
        handler = route.handler
        if not hasattr(handler, "__apispec__") or handler in originals:
            continue
        original = handler.__apispec__
        originals[handler] = original
        copy = {
            **original,
            "parameters": list(original["parameters"]),
            "responses": dict(original["responses"]),
            "schemas": [
                {**entry, "example": dict(entry["example"])} for entry in original["schemas"]
            ],
        }
        if effective_access(handler, settings.product_write_access) is not Access.PUBLIC:
            copy["security"] = [{SECURITY_SCHEME: []}]
            copy["responses"] = {**error_responses(401, 403), **copy["responses"]}
        handler.__apispec__ = copy
    return originals


def _build(app: web.Application) -> None:
    setup_aiohttp_apispec(
        app,
        title=TITLE,
        version=VERSION,
        url=SPEC_PATH,
        swagger_path="/docs",
        static_path="/static/swagger",
        in_place=True,
        info={"description": DESCRIPTION},
        produces=["application/json", PROBLEM_CONTENT_TYPE],
        consumes=["application/json"],
        display_configurations={"validatorUrl": None},  # no badge from validator.swagger.io
        securityDefinitions={
            SECURITY_SCHEME: {
                "type": "oauth2",
                "flow": "password",
                "tokenUrl": "/login/access-token",
                "scopes": {},  # required by Swagger 2.0, even with no scopes to offer
                "description": "Log in with a username and password; Swagger sends the token.",
            }
        },
    )
    # A Swagger UI setting for the /docs page, not part of the document (that dict is the
    # spec's options, which the page reads on its first request: filter a copy).
    document = app["swagger_dict"]
    app["swagger_dict"] = {k: v for k, v in document.items() if k != "display_configurations"}
    for operations in app["swagger_dict"]["paths"].values():
        # aiohttp adds HEAD to every GET route; documenting it twice only adds noise.
        operations.pop("head", None)
        for operation in operations.values():
            _say_what_the_route_really_does(operation)


def _say_what_the_route_really_does(operation: dict[str, Any]) -> None:
    """Fix what aiohttp-apispec's defaults get wrong about every operation.

    - `produces`: it writes `application/json` alone, but every error is
      `application/problem+json` (Swagger 2.0 has no per-response media types), and a
      route whose only success is a bodiless 204 produces nothing but problems.
    - A JSON body is required wherever one is declared: the validation middleware answers
      a missing one with 422, `{}` being the empty update.
    """
    has_body = any(
        "schema" in response
        for status, response in operation["responses"].items()
        if status.startswith("2")
    )
    operation["produces"] = [*(["application/json"] if has_body else []), PROBLEM_CONTENT_TYPE]
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "body":
            parameter["required"] = True


async def _redoc_page(_: web.Request) -> web.Response:
    return web.Response(text=_REDOC_HTML, content_type="text/html")


# ReDoc without its Google Fonts link: every asset comes from this service.
_REDOC_HTML = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>{TITLE} - ReDoc</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>body {{ margin: 0; padding: 0; }}</style>
  </head>
  <body>
    <redoc spec-url="{SPEC_PATH}" hide-loading></redoc>
    <script src="/static/redoc/redoc.standalone.js"></script>
  </body>
</html>
"""
