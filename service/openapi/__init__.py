"""The API document (/openapi.json, OpenAPI 3.1) and the pages that show it (/docs, /redoc).

Routes declare what the document says with aiohttp-apispec's decorators and the helpers
of service/openapi/declare.py; service/openapi/document.py builds it; pages.py serves
Swagger UI and ReDoc.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from service import keys
from service.openapi.declare import (
    IF_MATCH,
    IF_NONE_MATCH,
    error_responses,
    no_content,
    path_id,
    path_text,
    response_headers,
)
from service.openapi.document import TITLE, build_document
from service.openapi.pages import add_pages
from service.settings import Settings

SPEC_PATH = "/openapi.json"

__all__ = [
    "IF_MATCH",
    "IF_NONE_MATCH",
    "SPEC_PATH",
    "error_responses",
    "no_content",
    "path_id",
    "path_text",
    "response_headers",
    "setup_openapi",
]


def setup_openapi(app: web.Application, settings: Settings) -> None:
    """Build the document from the routes added so far; serve it, /docs and /redoc."""
    document = build_document(app, settings)
    app[keys.OPENAPI_DOCUMENT] = document
    body = orjson.dumps(document)

    async def serve_document(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(SPEC_PATH, serve_document)
    add_pages(app, title=TITLE, spec_path=SPEC_PATH)
