"""The API document and the offline Swagger UI and ReDoc pages."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from service.app import create_app
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.engine_independent("the API document")

VALIDATOR_BACKEND = "OPENAPI_SPEC_VALIDATOR_SCHEMA_VALIDATOR_BACKEND"
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


def test_document_is_valid(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid under both of openapi-spec-validator's backends: the pure-Python one and
    # jsonschema-rs (schemathesis brings it), which once refused Swagger 2.0's relative
    # `tokenUrl`; OpenAPI 3.1 allows a relative URL there.
    monkeypatch.setenv(VALIDATOR_BACKEND, "jsonschema")
    validate(spec)  # raises on an invalid document
    monkeypatch.setenv(VALIDATOR_BACKEND, "jsonschema-rs")
    complaints = [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert complaints == []
    assert spec.get("openapi") == "3.1.0"
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
    assert {"get", "post"} <= set(paths["/products"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/products/{product_id}"])
    assert "get" in paths["/health"]
    assert "get" in paths["/health/ready"]
    assert "503" in paths["/health/ready"]["get"]["responses"]
    assert "404" in paths["/products/{product_id}"]["get"]["responses"]
    assert "201" in paths["/products"]["post"]["responses"]
    # the collection is served with and without the slash but documented once (without
    # it, as linters want)
    assert "/products/" not in paths
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


# Found by schemathesis (tests/test_fuzz.py); each failed before its fix.


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = spec["paths"][path][method]
    return operation


def _body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = _operation(spec, method, path)["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


async def test_every_error_has_a_documented_media_type(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    # ST105: aiohttp-apispec wrote `produces: [application/json]` on every operation.
    response = await client.get("/products/0")
    assert (response.status, response.content_type) == (404, "application/problem+json")
    for path, method, operation in operations(spec):
        for status, answer in operation["responses"].items():
            produces = list(answer.get("content", {}))
            if int(status) >= 400:
                assert produces == [response.content_type], f"{method.upper()} {path} {status}"
            elif status in ("204", "304"):
                assert produces == [], f"{method.upper()} {path} {status}"
            else:
                assert produces == ["application/json"], f"{method.upper()} {path} {status}"
    # ... and a route whose only success is a bodiless 204 claims no JSON
    logout = _operation(spec, "post", "/logout")["responses"]
    assert "content" not in logout["204"]
    assert list(_operation(spec, "get", "/users/me")["responses"]["200"]["content"]) == [
        "application/json"
    ]


async def test_a_missing_json_body_is_documented_as_refused(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    # ST202: `PUT /products/{id}` with no body is 422, but the body was documented optional.
    response = await client.put("/products/1")
    assert response.status == 422
    bodies = [
        (f"{method.upper()} {path}", operation["requestBody"])
        for path, method, operation in operations(spec)
        if "requestBody" in operation
    ]
    assert bodies
    for where, body in bodies:
        assert body.get("required") is True, where


@pytest.mark.parametrize(
    ("price", "valid"), [(4.5, True), (0.125, False), (3390766018.2747, False)]
)
async def test_the_document_refuses_the_prices_the_service_refuses(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
    price: float,
    valid: bool,
) -> None:
    # ST202: prices with more than 2 decimals were documented as valid, and answered 422.
    price_schema = _body_schema(spec, "post", "/products")["properties"]["price"]
    assert Draft202012Validator(price_schema).is_valid(price) is valid
    response = await client.post("/products/", json={"name": "Tea", "price": price})
    assert response.status == (201 if valid else 422)

    (min_price,) = [
        p for p in _operation(spec, "get", "/products")["parameters"] if p["name"] == "min_price"
    ]
    text = repr(price)
    documented = {k: v for k, v in min_price["schema"].items() if k in ("type", "pattern")}
    assert Draft202012Validator(documented).is_valid(text) is valid
    response = await client.get("/products/", params={"min_price": text})
    assert response.status == (200 if valid else 422)


@pytest.mark.parametrize("text", ["1e2", "+5", "5."])
async def test_a_price_filter_is_documented_as_the_text_it_must_be(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
    text: str,
) -> None:
    # Numbers by JSON Schema's `type: number`, refused by the service.
    (min_price,) = [
        p for p in _operation(spec, "get", "/products")["parameters"] if p["name"] == "min_price"
    ]
    assert min_price["schema"]["type"] == "string"
    pattern = min_price["schema"]["pattern"]
    assert not Draft202012Validator({"type": "string", "pattern": pattern}).is_valid(text)
    assert (await client.get("/products/", params={"min_price": text})).status == 422


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("patch", "/users/me/password", "new_password"),
        ("post", "/reset-password", "new_password"),
        ("post", "/products", "name"),
    ],
)
def test_nul_in_text_is_documented_as_refused(
    spec: dict[str, Any], method: str, path: str, field: str
) -> None:
    # ST202: "\u0000" is refused with 422 (SQLite's text functions stop at NUL), but the
    # document allowed any string. (The 422 itself is tested with each route.)
    field_schema = _body_schema(spec, method, path)["properties"][field]
    assert not Draft202012Validator(field_schema).is_valid("abcdefgh\x00ijk")
    assert Draft202012Validator(field_schema).is_valid("abcdefghijk")


async def test_the_reserved_username_is_documented_as_refused(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    username = _body_schema(spec, "post", "/users/signup")["properties"]["username"]
    for name, status in (("mE", 422), ("meg", 201)):
        response = await client.post(
            "/users/signup", json={"username": name, "password": "correct horse battery"}
        )
        assert response.status == status, name
        assert Draft202012Validator(username).is_valid(name) is (status == 201), name


async def test_every_status_the_login_form_answers_is_documented(
    spec: dict[str, Any],
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    # ST103: a login sent as JSON is 415, which was undocumented.
    response = await client.post(
        "/login/access-token", json={"username": "alice", "password": "correct horse battery"}
    )
    assert response.status == 415
    assert "415" in _operation(spec, "post", "/login/access-token")["responses"]
