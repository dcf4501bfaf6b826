"""The API document (Swagger 2.0 from aiohttp-apispec), the Swagger UI and ReDoc pages."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_apispec import setup_aiohttp_apispec

from service.schemas.common import ProblemSchema

TITLE = "Products and accounts API"
VERSION = "1.0.0"
SPEC_PATH = "/openapi.json"
STATIC_DIR = Path(__file__).resolve().parent / "static"
DESCRIPTION = """\
A rebuild of the FastAPI workshop backend: products, users, JWT login.

* Collection routes answer with and without the trailing slash.
* Every error is `application/problem+json` (RFC 9457) with a human-readable `detail`;
  422 adds `errors` per field. Send `Accept-Language: ru` for Russian texts.
* Every response carries `X-Request-ID` and `X-Process-Time-ms`.
* Prices are JSON numbers with at most 2 decimals, stored exactly.
"""


def error_responses(*statuses: int) -> dict[str, dict[str, Any]]:
    """Documented problem+json responses for `statuses`, for a route's @docs."""
    return {
        str(status): {"description": HTTPStatus(status).phrase, "schema": ProblemSchema}
        for status in statuses
    }


def setup_openapi(app: web.Application) -> None:
    """Build the document from the routes added so far and serve /docs and /redoc."""
    setup_aiohttp_apispec(
        app,
        title=TITLE,
        version=VERSION,
        url=SPEC_PATH,
        swagger_path="/docs",
        static_path="/static/swagger",
        in_place=True,
        info={"description": DESCRIPTION},
        produces=["application/json", "application/problem+json"],
        consumes=["application/json"],
    )
    app.router.add_get("/redoc", _redoc_page)
    app.router.add_static("/static/redoc", STATIC_DIR / "redoc", name="redoc.static")


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
