"""Bugs found while building the service, each kept as a test."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.settings import Settings
from tests.test_products_api import create, problem, validation_errors

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize("method", ["put", "patch"])
async def test_an_empty_update_body_changes_nothing(client: Client, method: str) -> None:
    # aiohttp-apispec's middleware stored `{}` as `[]`, and the handler failed with a 500.
    product = await create(client)
    response = await getattr(client, method)(f"/products/{product['id']}", json={})
    assert response.status == 200
    body = await response.json()
    assert {k: body[k] for k in ("name", "price", "in_stock")} == {
        "name": "Tea",
        "price": 4.5,
        "in_stock": True,
    }


@pytest.mark.parametrize("path", ["/products/01", "/products/0000000000000000001"])
async def test_non_canonical_ids_name_nothing(client: Client, path: str) -> None:
    await create(client)
    await problem(await client.get(path), 404)


@pytest.mark.parametrize("value", ["+5", "1_0", " 5", "\u0665", "5.0"])
async def test_page_parameters_are_plain_digits(client: Client, value: str) -> None:
    errors = await validation_errors(await client.get("/products/", params={"skip": value}))
    assert "skip" in errors


async def test_two_apps_in_one_process_start_and_stop(migrated: Settings) -> None:
    # Each app removed every loguru sink, so the second one's cleanup crashed.
    first = TestServer(create_app(migrated))
    second = TestServer(create_app(migrated))
    await first.start_server()
    await second.start_server()
    await first.close()
    await second.close()
