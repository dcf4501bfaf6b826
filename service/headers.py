"""Headers every answer carries, set in one place (an on_response_prepare signal).

* No `Server` version: aiohttp would announce `Python/3.x aiohttp/3.y`, a free hint of which
  published vulnerabilities apply. It writes its own only when the header is absent.
* `X-Content-Type-Options: nosniff` everywhere: a browser must not take a JSON or problem
  body that echoes client text for HTML or script.
* `Cache-Control: no-store` (and `Pragma: no-cache`, which RFC 6749 5.1 asks of token
  answers, for HTTP/1.0 caches) on every answer about accounts (users, sessions, tokens,
  TOTP secrets and recovery codes): no shared or browser cache keeps a user's data or a
  token after the request. Routes set neither themselves.
* `Content-Language` and `Vary: Accept-Language` on every answer whose texts were chosen by
  the request's Accept-Language (`answer_language`): problem+json errors, and the 202s of
  the recovery routes. A cache must not serve one language's answer to a client of another.
* On the documentation pages, a Content-Security-Policy that runs only this service's own
  scripts (and the page's inline ones, by hash) and no framing (`frame-ancestors 'none'`).

service/connection.py sets the same headers on the answers its parser refusals get, which
no signal sees.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import MutableMapping

from aiohttp import web

from service import keys, messages

SERVER = "products-api"
DOCUMENTATION_PAGES = frozenset({"/docs", "/redoc"})
PAGES_WITH_INLINE_STYLES = frozenset({"/redoc"})
# The routes whose answers carry users, sessions or tokens.
ACCOUNT_PATHS = ("/users", "/login", "/logout")
_INLINE = {
    "script": re.compile(rb"<script>(.*?)</script>", re.DOTALL),
    "style": re.compile(rb"<style>(.*?)</style>", re.DOTALL),
}


def add_common(headers: MutableMapping[str, str]) -> None:
    """The headers every answer gets, whatever it is."""
    headers["Server"] = SERVER
    headers["X-Content-Type-Options"] = "nosniff"


def answer_language(request: web.Request) -> messages.Language:
    """The language of this answer's texts, by Accept-Language; its headers follow from it."""
    language = messages.preferred_language(request.headers.get("Accept-Language"))
    request[keys.LANGUAGE] = language
    return language


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    add_common(response.headers)
    language = request.get(keys.LANGUAGE)
    if language is not None:
        response.headers["Content-Language"] = language
        add_vary(response.headers, "Accept-Language")
    path = request.path
    if path.startswith(ACCOUNT_PATHS):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    elif path in DOCUMENTATION_PAGES and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        response.headers["Content-Security-Policy"] = content_security_policy(
            body, inline_styles=path in PAGES_WITH_INLINE_STYLES
        )


def add_vary(headers: MutableMapping[str, str], name: str) -> None:
    """Add `name` to Vary, keeping what is there (compression may have put Accept-Encoding)."""
    present = [part.strip() for part in headers.get("Vary", "").split(",") if part.strip()]
    if name.lower() not in (part.lower() for part in present):
        headers["Vary"] = ", ".join([*present, name])


@functools.lru_cache(maxsize=8)
def content_security_policy(page: bytes, *, inline_styles: bool = False) -> str:
    """The policy of a documentation page: our own assets, its inline scripts by hash only.

    Swagger UI sets element styles from script (allowed: that is not inline CSS) and draws
    icons from data: URIs; its page's one inline script and style are allowed by hash.
    ReDoc searches in a worker it makes from a blob:, and writes style attributes and
    <style> elements as it renders (styled-components): `inline_styles` allows those (CSS
    only; scripts stay our files and hashed inline code).
    """
    scripts = " ".join(_hashes("script", page))
    styles = "'unsafe-inline'" if inline_styles else " ".join(_hashes("style", page))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {scripts}".rstrip(),
            f"style-src 'self' {styles}".rstrip(),
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _hashes(element: str, page: bytes) -> list[str]:
    found = _INLINE[element].findall(page)
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(code).digest()).decode()}'" for code in found
    ]
