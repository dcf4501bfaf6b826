from __future__ import annotations

from aiohttp.test_utils import TestClient


async def test_create_and_get_product(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/products/", json={"name": "Tea", "price": 4.5})
    assert response.status == 201
    body = await response.json()
    assert response.headers["Location"] == f"/products/{body['id']}"
    got = await client.get(response.headers["Location"])
    assert (await got.json())["price"] == 4.5
