"""Answers aiohttp itself makes (outside every middleware), as our connection class shapes them."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from service import connection, messages


class ServedTestServer(TestServer):
    """aiohttp's TestServer, serving through our connection class as every runner does."""

    async def _make_runner(self, **kwargs: Any) -> connection.AppRunner:
        return connection.AppRunner(self.app, **kwargs)


async def test_a_5xx_from_aiohttp_itself_is_a_generic_internal_error(
    aiohttp_client: AiohttpClient,
) -> None:
    # A bare app, without our middlewares: its failing handler is answered by aiohttp's
    # RequestHandler.handle_error (ours, in service/connection.py), the path a failure
    # outside the middlewares takes.
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application()
    app.router.add_get("/boom", boom)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(ServedTestServer(app))

    response = await client.get("/boom")

    assert response.status == 500
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["detail"] == messages.render("internal_error", "en", {})
    assert "could not be read" not in problem["detail"]  # not the parser's wording
    assert "secret internals" not in await response.text()
    assert re.fullmatch(r"\d+\.\d{2}", response.headers["X-Process-Time-ms"])
    assert response.headers["X-Request-ID"]
