"""Swagger UI 5 (/docs) and ReDoc (/redoc), served offline from a pinned package.

The assets are those of drf-spectacular-sidecar, which republishes the official
swagger-ui-dist and redoc builds every month; it is found on disk, never imported (its
`__init__` imports Django, which only its installer needs). The pages are ours: Swagger
UI is configured here, with `queryConfigEnabled` off, so a `/docs?url=...` or
`?configUrl=...` link cannot make it load another document (CVE-2021-46708: a document
whose `tokenUrl` sends the password to someone else).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

ASSETS_PACKAGE = "drf_spectacular_sidecar"
SWAGGER_STATIC = "/static/swagger"
REDOC_STATIC = "/static/redoc"


def assets_directory() -> Path:
    """The package's static folder (swagger-ui-dist/ and redoc/bundles/ inside)."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{ASSETS_PACKAGE} is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / ASSETS_PACKAGE


def add_pages(app: web.Application, *, title: str, spec_path: str) -> None:
    """Serve /docs, /redoc and their assets (nothing else from the package's folder)."""
    assets = assets_directory()
    swagger = _swagger_html(title=title, spec_path=spec_path)
    redoc = _redoc_html(title=title, spec_path=spec_path)
    app.router.add_get("/docs", _page(swagger))
    app.router.add_get("/redoc", _page(redoc))
    app.router.add_static(SWAGGER_STATIC, assets / "swagger-ui-dist", name="swagger.static")
    bundle = _offline_redoc(assets / "redoc" / "bundles" / "redoc.standalone.js")
    app.router.add_get(f"{REDOC_STATIC}/redoc.standalone.js", _script(bundle))
    app.router.add_static(REDOC_STATIC, assets / "redoc" / "bundles", name="redoc.static")


# ReDoc's sidebar footer shows Redocly's logo from their CDN: a request to another host
# from a page that must work offline and tell no one who reads the docs. Without the URL
# the image fails to load and ReDoc removes it (its onError); the link text stays.
_REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _offline_redoc(path: Path) -> bytes:
    bundle = path.read_bytes()
    if _REDOCLY_LOGO not in bundle:  # a new ReDoc: check what it fetches, then adapt
        raise RuntimeError(f"{path}: ReDoc's logo URL moved; see service/openapi/pages.py")
    return bundle.replace(_REDOCLY_LOGO, b"")


def _script(body: bytes) -> Handler:
    async def script(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/javascript", charset="utf-8")

    return script


def _page(html: str) -> Handler:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    return page


def _swagger_html(*, title: str, spec_path: str) -> str:
    config = {
        "url": spec_path,
        "dom_id": "#swagger-ui",
        "queryConfigEnabled": False,  # no ?url= / ?configUrl= (CVE-2021-46708)
        "validatorUrl": None,  # no badge from validator.swagger.io
        "deepLinking": True,
        "persistAuthorization": False,
        "oauth2RedirectUrl": f"{SWAGGER_STATIC}/oauth2-redirect.html",
    }
    return f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>{title} - Swagger UI</title>
    <link rel="stylesheet" href="{SWAGGER_STATIC}/swagger-ui.css">
    <link rel="icon" type="image/png" href="{SWAGGER_STATIC}/favicon-32x32.png">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{SWAGGER_STATIC}/swagger-ui-bundle.js"></script>
    <script src="{SWAGGER_STATIC}/swagger-ui-standalone-preset.js"></script>
    <script>
      const config = {json.dumps(config)};
      window.ui = SwaggerUIBundle({{
        ...config,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "BaseLayout",
      }});
    </script>
  </body>
</html>
"""


# ReDoc without its Google Fonts link: every asset comes from this service.
def _redoc_html(*, title: str, spec_path: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>{title} - ReDoc</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>body {{ margin: 0; padding: 0; }}</style>
  </head>
  <body>
    <redoc spec-url="{spec_path}" hide-loading></redoc>
    <script src="{REDOC_STATIC}/redoc.standalone.js"></script>
  </body>
</html>
"""
