"""The OpenAPI 3.1 document: what client generators and linters read in it.

(tests/test_openapi.py checks the document against the service's answers;
tests/test_api_clients.py feeds it to the generators themselves.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp_apispec import docs, request_schema, response_schema

from service.app import create_app
from service.auth import Access, requires
from service.keys import OPENAPI_DOCUMENT
from service.openapi import error_responses, response_headers
from service.openapi.document import build_document
from service.schemas.products import ProductCreateSchema, ProductSchema
from service.settings import ProductWriteAccess, Settings
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.engine_independent("the API document")

Client = TestClient  # type: ignore[type-arg]
METHODS = ("get", "put", "post", "delete", "patch")
EXPECTED_IDS = {
    ("get", "/products"): "list_products",
    ("post", "/products"): "create_product",
    ("get", "/products/{product_id}"): "get_product",
    ("put", "/products/{product_id}"): "replace_product",
    ("patch", "/products/{product_id}"): "update_product",
    ("delete", "/products/{product_id}"): "delete_product",
    ("post", "/users/signup"): "signup",
    ("post", "/login/access-token"): "login",
    ("post", "/login/refresh"): "refresh_token",
    ("post", "/logout"): "logout",
}


def _document(**settings: Any) -> dict[str, Any]:
    app = create_app(Settings(secret_key=TEST_SECRET_KEY, **settings))
    return app[OPENAPI_DOCUMENT]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_document_is_openapi_3_1_with_servers_and_security_schemes() -> None:
    document = _document()
    assert document["openapi"] == "3.1.0"
    assert document["servers"] and document["servers"][0]["url"] == "/"
    schemes = document["components"]["securitySchemes"]
    password = schemes["OAuth2Password"]["flows"]["password"]
    assert password["tokenUrl"] == "/login/access-token"
    assert schemes["BearerToken"] == {**schemes["BearerToken"], "type": "http", "scheme": "bearer"}
    assert "swagger" not in document and "definitions" not in document


def test_every_operation_has_a_unique_snake_case_operation_id() -> None:
    operations = _operations(_document())
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in ids), ids
    found = {(method, path): operation["operationId"] for method, path, operation in operations}
    assert {key: found.get(key) for key in EXPECTED_IDS} == EXPECTED_IDS


def test_public_operations_say_so_and_protected_ones_name_both_schemes() -> None:
    document = _document()
    public = document["paths"]["/products"]["get"]
    assert public["security"] == []
    me = document["paths"]["/users/me"]["get"]
    assert me["security"] == [{"OAuth2Password": []}, {"BearerToken": []}]
    assert {"401", "403"} <= set(me["responses"])
    # Product writes follow PRODUCT_WRITE_ACCESS.
    locked = _document(product_write_access=ProductWriteAccess.USER)
    assert locked["paths"]["/products"]["post"]["security"] == me["security"]


def test_request_bodies_are_request_bodies_in_the_media_types_parsed() -> None:
    paths = _document()["paths"]
    login = paths["/login/access-token"]["post"]["requestBody"]
    assert login["required"] is True
    assert list(login["content"]) == ["application/x-www-form-urlencoded"]
    refresh = paths["/login/refresh"]["post"]["requestBody"]["content"]
    assert set(refresh) == {"application/json", "application/x-www-form-urlencoded"}
    create = paths["/products"]["post"]["requestBody"]["content"]
    assert create == {
        "application/json": {"schema": {"$ref": "#/components/schemas/ProductCreate"}}
    }
    for _, _, operation in _operations({"paths": paths}):
        assert all(p["in"] in ("path", "query", "header") for p in operation.get("parameters", []))


def test_nullable_fields_are_json_schema_null_types() -> None:
    schemas = _document()["components"]["schemas"]
    assert schemas["Product"]["properties"]["description"]["type"] == ["string", "null"]
    assert schemas["User"]["properties"]["email"]["type"] == ["string", "null"]


def test_the_sort_order_is_a_named_enum_with_readable_variant_names() -> None:
    document = _document()
    sort = document["components"]["schemas"]["ProductSort"]
    assert sort["enum"] == ["id", "-id", "name", "-name", "price", "-price"]
    assert sort["x-enum-varnames"][sort["enum"].index("-price")] == "PRICE_DESC"
    (parameter,) = [
        p for p in document["paths"]["/products"]["get"]["parameters"] if p["name"] == "sort"
    ]
    assert parameter["schema"]["$ref"] == "#/components/schemas/ProductSort"


def test_headers_are_documented_where_they_are_sent() -> None:
    document = _document()
    every = {"X-Request-ID", "X-Process-Time-ms"}
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            sent = set(response["headers"])
            assert every <= sent, f"{method} {path} {status}"
            if status == "401":
                assert "WWW-Authenticate" in sent, f"{method} {path}"
            if status == "429":
                assert "Retry-After" in sent, f"{method} {path}"
    paths = document["paths"]
    assert {"ETag", "Location"} <= set(paths["/products"]["post"]["responses"]["201"]["headers"])
    item = paths["/products/{product_id}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert "ETag" in item["get"]["responses"]["304"]["headers"]
    assert "Location" in paths["/users/signup"]["post"]["responses"]["201"]["headers"]
    names = {
        method: {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        for method, operation in item.items()
    }
    assert names == {
        "get": {"If-None-Match"},
        "put": {"If-Match"},
        "patch": {"If-Match"},
        "delete": {"If-Match"},
    }


def test_no_two_paths_are_the_same_template() -> None:
    paths = _document()["paths"]
    shapes = [re.sub(r"\{[^}]+\}", "{}", path) for path in paths]
    assert len(shapes) == len(set(shapes)), sorted(shapes)
    assert set(paths["/users/{user}"]) == {"get", "patch", "delete"}
    kinds = {
        method: [p["schema"]["type"] for p in op["parameters"] if p["in"] == "path"]
        for method, op in paths["/users/{user}"].items()
    }
    assert kinds == {"get": ["string"], "patch": ["integer"], "delete": ["integer"]}


async def test_a_fixed_path_answers_405_with_its_own_methods(client: Client) -> None:
    for method in ("PATCH", "DELETE", "OPTIONS"):
        response = await client.request(method, "/users/signup")
        assert response.status == 405, method
        assert response.content_type == "application/problem+json"
        assert response.headers["Allow"] == "POST", method
    # ... while any other segment is still read as a user id: 404, as before
    response = await client.patch("/users/alice", json={})
    assert response.status == 404
    response = await client.put("/users/alice")
    assert response.status == 405
    allow = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allow


def test_a_new_route_gets_the_common_machinery_by_declaration() -> None:
    """What another engineer's route gets without touching service/openapi/."""

    @docs(tags=["products"], summary="Recover", responses=error_responses(422))
    @request_schema(ProductCreateSchema)
    @response_schema(ProductSchema, 201, description="Made")
    @response_headers(201, "Location")
    @requires(Access.USER)
    async def recover_password(_: web.Request) -> web.Response:
        raise NotImplementedError

    app = web.Application()
    app.router.add_post("/password-recovery", recover_password)
    document = build_document(app, Settings(secret_key=TEST_SECRET_KEY))
    operation = document["paths"]["/password-recovery"]["post"]
    assert operation["operationId"] == "recover_password"
    assert operation["security"] == [{"OAuth2Password": []}, {"BearerToken": []}]
    assert list(operation["requestBody"]["content"]) == ["application/json"]
    responses = operation["responses"]
    assert list(responses["201"]["content"]) == ["application/json"]
    assert {"Location", "X-Request-ID"} <= set(responses["201"]["headers"])
    assert list(responses["422"]["content"]) == ["application/problem+json"]
    assert "WWW-Authenticate" in responses["401"]["headers"]


async def test_swagger_ui_5_ignores_query_configuration(client: Client) -> None:
    """CVE-2021-46708: `/docs?url=...` must not load another document (and its tokenUrl)."""
    response = await client.get("/docs?url=https://attacker.example/openapi.json")
    html = await response.text()
    assert '"queryConfigEnabled": false' in html
    assert "attacker.example" not in html
    assert '"url": "/openapi.json"' in html
    bundle = await client.get("/static/swagger/swagger-ui-bundle.js")
    assert bundle.status == 200
    assert b"queryConfigEnabled" in await bundle.read()  # an option only Swagger UI 4.1+ reads
