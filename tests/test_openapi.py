"""The API document and the offline Swagger UI and ReDoc pages."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from service.app import create_app
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY

METHODS = ("get", "put", "post", "delete", "patch", "options", "head")
ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document as a client fetches it, built once for this module's tests."""
    directory = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        database_path=directory / "test.db",
        log_file=directory / "app.log",
        log_stderr=False,
        secret_key=TEST_SECRET_KEY,
    )

    async def fetch() -> dict[str, Any]:
        async with TestClient(TestServer(create_app(settings))) as client:
            response = await client.get("/openapi.json")
            assert response.status == 200
            assert response.content_type == "application/json"
            document: dict[str, Any] = await response.json()
            return document

    return asyncio.run(fetch())


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_document_is_valid(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on an invalid document
    assert spec.get("swagger") == "2.0" or spec.get("openapi", "").startswith("3.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]


def test_every_operation_has_responses_summary_and_tags(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    assert ops
    for path, method, operation in ops:
        where = f"{method.upper()} {path}"
        assert operation.get("responses"), f"{where} documents no response"
        assert operation.get("summary", "").strip(), f"{where} has no summary"
        assert operation.get("tags"), f"{where} has no tags"
        for status, response in operation["responses"].items():
            assert response.get("description"), f"{where} {status} has no description"


def test_path_parameters_are_declared(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        declared = {
            p["name"]
            for p in [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]
            if p.get("in") == "path" and p.get("required")
        }
        assert set(re.findall(r"\{(\w+)\}", path)) <= declared, f"{method.upper()} {path}"


def test_product_and_health_routes_are_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/products/"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/products/{product_id}"])
    assert "get" in paths["/health"]
    assert "get" in paths["/health/ready"]
    assert "503" in paths["/health/ready"]["get"]["responses"]
    assert "404" in paths["/products/{product_id}"]["get"]["responses"]
    assert "201" in paths["/products/"]["post"]["responses"]
    # the slash-less aliases are served but not documented twice
    assert "/products" not in paths
    # the documentation pages themselves are not API operations
    assert not {"/docs", "/redoc", "/openapi.json"} & set(paths)


async def test_swagger_ui_is_served_from_local_assets(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "swagger-ui" in html.lower()
    assert "/openapi.json" in html
    assets = ASSET.findall(html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"external asset {asset}"
        assert asset.startswith("/"), asset
        got = await client.get(asset)
        assert got.status == 200, asset
        assert len(await got.read()) > 0, asset
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)


async def test_redoc_is_served_without_external_urls(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/redoc")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "http://" not in html and "https://" not in html
    assert "fonts.googleapis" not in html
    assert "/openapi.json" in html
    assets = ASSET.findall(html)
    assert "/static/redoc/redoc.standalone.js" in assets
    script = await client.get("/static/redoc/redoc.standalone.js")
    assert script.status == 200
    assert "javascript" in script.content_type
    assert len(await script.read()) > 100_000  # the real bundle, not a stub


async def test_static_directories_serve_nothing_else(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    for path in (
        "/static/redoc/../../settings.py",
        "/static/redoc/%2e%2e/%2e%2e/settings.py",
        "/static/redoc/nope.js",
        "/static/swagger/../../../service/settings.py",
    ):
        response = await client.get(path)
        assert response.status in (403, 404), path
        assert "SECRET" not in await response.text(), path
