"""The General part of API.md: malformed requests, problem+json, languages, request ids."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import keys
from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests import engines
from tests.conftest import log_lines
from tests.helpers import PROCESS_TIME, problem

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Any]

JSON = {"Content-Type": "application/json"}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
GENERIC_500 = {
    "type": "about:blank",
    "title": "Internal Server Error",
    "status": 500,
    "detail": "An unexpected error occurred; it has been logged",
}
SMALL_LIMIT = 1024


async def product_count(database: Database) -> int:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT count(*) FROM products")
    return int(next(iter(rows))[0])


async def create_tea(client: Client) -> str:
    response = await client.post("/products/", json={"name": "Tea", "price": 4.5})
    assert response.status == 201
    return response.headers["Location"]


# --- 400: not parseable JSON ----------------------------------------------------------------

UNPARSEABLE = {
    "truncated": b'{"name": "Tea",',
    "unquoted key": b'{name: "Tea", "price": 1}',
    "single quotes": b"{'name': 'Tea', 'price': 1}",
    "trailing comma": b'{"name": "Tea", "price": 1,}',
    "trailing garbage": b'{"name": "Tea", "price": 1} x',
    "two documents": b'{"name": "Tea", "price": 1}{"name": "Tea", "price": 1}',
    "invalid utf-8": b'{"name": "Tea\xff\xfe", "price": 1}',
    "latin-1 text": '{"name": "Caf\u00e9", "price": 1}'.encode("latin-1"),
    "utf-8 encoded surrogate": b'{"name": "a\xed\xa0\x80b", "price": 1}',
    "utf-8 bom": b'\xef\xbb\xbf{"name": "Tea", "price": 1}',
    "100,000 brackets": b"[" * 100_000,
    "100,000 objects": b'{"a":' * 100_000,
    "deep inside a field": b'{"name": "Tea", "price": 1, "description": ' + b"[" * 100_000,
    "5,000-digit integer": b'{"name": "Tea", "price": ' + b"9" * 5000 + b"}",
    "5,000-digit negative": b'{"name": "Tea", "price": -' + b"9" * 5000 + b"}",
    "5,000-digit fraction": b'{"name": "Tea", "price": 0.' + b"1" * 5000 + b"}",
    "5,000-digit exponent": b'{"name": "Tea", "price": 1e' + b"9" * 5000 + b"}",
    "NaN": b'{"name": "Tea", "price": NaN}',
    "Infinity": b'{"name": "Tea", "price": Infinity}',
    "-Infinity": b'{"name": "Tea", "price": -Infinity}',
    "lone high surrogate": b'{"name": "\\ud800", "price": 1}',
    "lone low surrogate": b'{"name": "Tea\\udc00", "price": 1}',
    "reversed pair": b'{"name": "\\ude00\\ud83d", "price": 1}',
    "surrogate in a key": b'{"name": "Tea", "price": 1, "\\ud800": 1}',
    "surrogate in an unknown nested value": b'{"name": "Tea", "price": 1, "x": [["\\udbff"]]}',
    "bare word": b"Tea",
}


@pytest.mark.parametrize("raw", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
async def test_unparseable_body_on_create_is_400(
    client: Client, database: Database, raw: bytes
) -> None:
    response = await client.post("/products/", data=raw, headers=JSON)

    body = await problem(response, 400)
    assert body["title"] == "Bad Request"
    assert body["detail"].startswith("The request body is not valid JSON: ")
    assert "errors" not in body
    assert await product_count(database) == 0


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize(
    "raw",
    [b'{"price": ', b"[" * 100_000, b'{"price": ' + b"1" * 5000 + b"}", b'{"name": "\\ud800"}'],
)
async def test_unparseable_body_on_update_is_400(client: Client, method: str, raw: bytes) -> None:
    path = await create_tea(client)
    await problem(await client.request(method, path, data=raw, headers=JSON), 400)
    assert (await (await client.get(path)).json())["name"] == "Tea"


async def test_unparseable_body_of_unknown_id_is_400_before_404(client: Client) -> None:
    await problem(await client.put("/products/99", data=b"{", headers=JSON), 400)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b'{"name": "\\ud83c\\udf75 tea", "price": 1}', "\U0001f375 tea"),
        (b'{"name": "\\\\ud800 is text", "price": 1}', "\\ud800 is text"),
        ('{"name": "Чай 🍵", "price": 1}'.encode(), "Чай 🍵"),
        (b'{"name": "\\u0422\\u0435a", "price": 1}', "Теa"),
    ],
    ids=["escaped pair", "escaped backslash", "raw utf-8", "escaped bmp"],
)
async def test_valid_unicode_is_accepted(client: Client, raw: bytes, name: str) -> None:
    response = await client.post("/products/", data=raw, headers=JSON)
    assert response.status == 201, await response.text()
    assert (await response.json())["name"] == name


@pytest.mark.parametrize(
    "literal",
    [str(2**70), str(2**64), str(2**63), "-" + str(2**70), "9" * 40, "1e400", "1E-400"],
)
async def test_huge_but_parseable_numbers_are_422_never_500(
    client: Client, database: Database, literal: str
) -> None:
    raw = f'{{"name": "Tea", "price": {literal}}}'.encode()
    response = await client.post("/products/", data=raw, headers=JSON)
    body = await problem(response, 422)
    assert set(body["errors"]) == {"price"}
    assert await product_count(database) == 0


async def test_huge_integer_in_an_unknown_field_is_422(client: Client) -> None:
    raw = f'{{"name": "Tea", "price": 1, "id": {2**70}}}'.encode()
    body = await problem(await client.post("/products/", data=raw, headers=JSON), 422)
    assert set(body["errors"]) == {"id"}


# --- 422: the body as a whole -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"[]", b"[1, 2]", b"null", b"", b"   ", b'"text"', b"42", b"false"]
)
async def test_body_as_a_whole_is_422_under_schema(client: Client, raw: bytes) -> None:
    body = await problem(await client.post("/products/", data=raw, headers=JSON), 422)
    assert set(body["errors"]) == {"_schema"}
    assert body["title"] == "Unprocessable Content" or body["title"] == "Unprocessable Entity"
    assert body["detail"] == "Request validation failed: _schema"


async def test_validation_problem_shape(client: Client) -> None:
    response = await client.post(
        "/products/", json={"name": 5, "price": "12", "in_stock": "yes", "is_superuser": True}
    )
    body = await problem(response, 422)
    assert set(body["errors"]) == {"name", "price", "in_stock", "is_superuser"}
    for messages in body["errors"].values():
        assert isinstance(messages, list)
        assert messages
        assert all(isinstance(message, str) for message in messages)
    assert body["detail"] == "Request validation failed: in_stock, is_superuser, name, price"


# --- 413 --------------------------------------------------------------------------------------


@pytest.fixture
async def small_client(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    """A client of an app whose MAX_BODY_BYTES is 1 KiB."""
    settings = dataclasses.replace(migrated, max_body_bytes=SMALL_LIMIT)
    client: Client = await aiohttp_client(create_app(settings))
    return client


def body_of_size(size: int) -> bytes:
    """A valid product body of exactly `size` bytes."""
    empty = b'{"name": "Tea", "price": 1, "description": ""}'
    padded = empty[:-2] + b"x" * (size - len(empty)) + b'"}'
    assert len(padded) == size
    return padded


async def test_body_over_max_body_bytes_is_413(small_client: Client, database: Database) -> None:
    response = await small_client.post(
        "/products/", data=body_of_size(SMALL_LIMIT + 1), headers=JSON
    )
    body = await problem(response, 413)
    assert body["title"] == "Request Entity Too Large" or body["title"] == "Content Too Large"
    assert body["detail"] == f"The request body is larger than {SMALL_LIMIT} bytes"
    assert await product_count(database) == 0


async def test_body_of_exactly_max_body_bytes_is_accepted(small_client: Client) -> None:
    response = await small_client.post("/products/", data=body_of_size(SMALL_LIMIT), headers=JSON)
    assert response.status == 201, await response.text()


async def test_chunked_body_over_the_limit_is_413(small_client: Client, database: Database) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        raw = body_of_size(4 * SMALL_LIMIT)
        for start in range(0, len(raw), 256):
            yield raw[start : start + 256]

    response = await small_client.post("/products/", data=chunks(), headers=JSON)

    assert "Content-Length" not in response.request_info.headers
    body = await problem(response, 413)
    assert body["detail"] == f"The request body is larger than {SMALL_LIMIT} bytes"
    assert await product_count(database) == 0


async def test_compressed_body_that_inflates_over_the_limit_is_413(
    small_client: Client, database: Database
) -> None:
    compressed = gzip.compress(body_of_size(64 * SMALL_LIMIT))
    assert len(compressed) < SMALL_LIMIT

    response = await small_client.post(
        "/products/", data=compressed, headers={**JSON, "Content-Encoding": "gzip"}
    )

    await problem(response, 413)
    assert await product_count(database) == 0


async def test_413_on_update_too(small_client: Client) -> None:
    path = await create_tea(small_client)
    response = await small_client.put(path, data=body_of_size(SMALL_LIMIT + 1), headers=JSON)
    await problem(response, 413)


async def test_default_limit_is_one_mebibyte(client: Client) -> None:
    raw = io.BytesIO(body_of_size(1024 * 1024 + 1))
    response = await client.post("/products/", data=raw, headers=JSON)
    body = await problem(response, 413)
    assert body["detail"] == "The request body is larger than 1048576 bytes"


# --- 415 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_json_content_type_is_415(
    client: Client, database: Database, method: str, content_type: str
) -> None:
    path = await create_tea(client)
    target = "/products/" if method == "POST" else path

    response = await client.request(
        method,
        target,
        data=b'{"name": "Coffee", "price": 1}',
        headers={"Content-Type": content_type},
    )

    body = await problem(response, 415)
    assert body["detail"] == "Send the body as application/json"
    assert await product_count(database) == 1
    assert (await (await client.get(path)).json())["name"] == "Tea"


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/JSON", "application/json"]
)
async def test_json_content_types_are_accepted(client: Client, content_type: str) -> None:
    response = await client.post(
        "/products/",
        data=b'{"name": "Coffee", "price": 1}',
        headers={"Content-Type": content_type},
    )
    assert response.status == 201, await response.text()


# --- 404 / 405 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/products/1/reviews"),
        ("DELETE", "/product"),
        ("GET", "/PRODUCTS/"),
    ],
)
async def test_unknown_route_is_404_problem(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path, allow_redirects=False)
    body = await problem(response, 404)
    assert body["title"] == "Not Found"
    assert body["detail"] == f"No route matches {path}"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/products/1", {"GET", "PUT", "PATCH", "DELETE"}),
        ("DELETE", "/products/", {"GET", "POST"}),
        ("PUT", "/products", {"GET", "POST"}),
        ("PATCH", "/products/", {"GET", "POST"}),
        ("OPTIONS", "/products/1", {"GET", "PUT", "PATCH", "DELETE"}),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: Client, method: str, path: str, allowed: set[str]
) -> None:
    await create_tea(client)

    response = await client.request(method, path, json={"name": "Tea", "price": 1})

    body = await problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert body["detail"] == f"Method {method} is not allowed here"
    allow = {item.strip() for item in response.headers["Allow"].split(",")}
    assert allowed <= allow
    assert method not in allow


# --- 500 --------------------------------------------------------------------------------------

SECRET_IN_ERROR = "password=hunter2 SELECT hashed_password FROM users"


@pytest.fixture
async def boom_client(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    """A client of the real app plus a throwaway route that fails unexpectedly."""
    app = create_app(migrated)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(SECRET_IN_ERROR)

    async def boom_lookup(request: web.Request) -> web.Response:
        return web.json_response({"value": {}["missing"]})

    app.router.add_get("/boom", boom)
    app.router.add_post("/boom-lookup", boom_lookup)
    client: Client = await aiohttp_client(app)
    return client


async def test_unexpected_exception_is_a_generic_500(
    boom_client: Client, migrated: Settings
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    try:
        response = await boom_client.get("/boom", headers={"X-Request-ID": "boom-1"})
        text = await response.text()
    finally:
        loop.set_debug(False)

    assert await problem(response, 500) == GENERIC_500
    for leak in ("Traceback", "RuntimeError", "hunter2", "SELECT", "boom.py", "line "):
        assert leak not in text
    assert response.headers["X-Request-ID"] == "boom-1"

    lines = log_lines(migrated)
    log = "\n".join(lines)
    assert "Unhandled error in GET /boom" in log
    assert "Traceback (most recent call last):" in log
    assert f"RuntimeError: {SECRET_IN_ERROR}" in log
    [request_line] = [line for line in lines if "GET /boom выполнялся" in line]
    assert "status=500" in request_line
    assert "request_id=boom-1" in request_line


async def test_generic_500_in_russian(boom_client: Client) -> None:
    response = await boom_client.get("/boom", headers={"Accept-Language": "ru"})
    assert await problem(response, 500) == {
        "type": "about:blank",
        "title": "Внутренняя ошибка сервера",
        "status": 500,
        "detail": "Произошла непредвиденная ошибка; она записана в журнал",
    }


async def test_every_unexpected_exception_type_is_a_generic_500(
    boom_client: Client, migrated: Settings
) -> None:
    response = await boom_client.post("/boom-lookup")
    assert await problem(response, 500) == GENERIC_500
    assert "KeyError: 'missing'" in "\n".join(log_lines(migrated))


async def test_service_keeps_serving_after_a_500(boom_client: Client) -> None:
    assert (await boom_client.get("/boom")).status == 500
    path = await create_tea(boom_client)
    assert (await boom_client.get(path)).status == 200


# --- languages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept_language",
    [
        "ru",
        "RU",
        "ru-RU",
        "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7",
        "en;q=0.5, ru",
        "en;q=0.3, ru;q=0.4",
        "de, ru;q=0.5",
        "fr;q=0.9, ru-UA;q=0.8, en;q=0.1",
        "ru, en",  # equal quality: the range listed first is preferred
        "ru-RU, en-US",
        "en;q=0.5, ru, en",
    ],
)
async def test_russian_when_it_is_preferred(client: Client, accept_language: str) -> None:
    response = await client.get("/products/7", headers={"Accept-Language": accept_language})
    assert await problem(response, 404) == {
        "type": "about:blank",
        "title": "Не найдено",
        "status": 404,
        "detail": "Продукт 7 не найден",
    }


@pytest.mark.parametrize(
    "accept_language",
    [
        "en",
        "ru;q=0.1, en",
        "en-US,en;q=0.9,ru;q=0.8",
        "ru;q=0, en;q=0.1",
        "ru;q=0",
        "fr",
        "*",
        "",
        "not a language tag!!",
        "rus",
        "russian",
        "en, ru",
        "en-US, ru-RU;q=1",
    ],
)
async def test_english_otherwise(client: Client, accept_language: str) -> None:
    response = await client.get("/products/7", headers={"Accept-Language": accept_language})
    assert await problem(response, 404) == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Product 7 not found",
    }


async def test_english_without_accept_language(client: Client) -> None:
    body = await problem(await client.get("/products/7"), 404)
    assert body["detail"] == "Product 7 not found"


async def test_russian_for_every_kind_of_error(small_client: Client) -> None:
    ru = {"Accept-Language": "ru"}
    path = await create_tea(small_client)
    cases = [
        (await small_client.get("/nope", headers=ru), 404, "Не найдено", "Нет маршрута /nope"),
        (
            await small_client.post(path, headers=ru),
            405,
            "Метод не разрешён",
            "Метод POST здесь не разрешён",
        ),
        (
            await small_client.post("/products/", data=b"{", headers={**ru, **JSON}),
            400,
            "Неверный запрос",
            "Тело запроса не является корректным JSON: ",
        ),
        (
            await small_client.post("/products/", json={"price": 1}, headers=ru),
            422,
            "Ошибка проверки данных",
            "Запрос не прошёл проверку: name",
        ),
        (
            await small_client.get("/products/?limit=0", headers=ru),
            422,
            "Ошибка проверки данных",
            "Запрос не прошёл проверку: limit",
        ),
        (
            await small_client.post(
                "/products/", data=body_of_size(SMALL_LIMIT + 1), headers={**ru, **JSON}
            ),
            413,
            "Слишком большой запрос",
            f"Тело запроса больше {SMALL_LIMIT} байт",
        ),
        (
            await small_client.post(
                "/products/", data=b"{}", headers={**ru, "Content-Type": "a/b"}
            ),
            415,
            "Неподдерживаемый тип данных",
            "Отправьте тело запроса как application/json",
        ),
        (
            await small_client.put(path, json={"price": 1}, headers={**ru, "If-Match": '"0.0"'}),
            412,
            "Условие не выполнено",
            "Ресурс изменился: его ETag не совпадает с If-Match",
        ),
    ]
    for response, status, title, detail in cases:
        body = await problem(response, status)
        assert body["title"] == title
        assert body["detail"].startswith(detail), body


# --- X-Request-ID and X-Process-Time-ms ---------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["abc", "a", "x" * 128, "0f8fad5b-d9cb-469f-a165-70867728950e", "A.b_C-9", "...", "_-_"],
)
async def test_well_formed_request_id_is_echoed(client: Client, request_id: str) -> None:
    for response in (
        await client.get("/products/", headers={"X-Request-ID": request_id}),
        await client.get("/products/7", headers={"X-Request-ID": request_id}),
    ):
        assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["x" * 129, "x" * 200, "has space", "a/b", "a:b", "<script>", "a,b", "", "ид"],
)
async def test_malformed_request_id_is_replaced(client: Client, request_id: str) -> None:
    first = await client.get("/products/", headers={"X-Request-ID": request_id})
    second = await client.get("/products/", headers={"X-Request-ID": request_id})

    for response in (first, second):
        assert response.status == 200
        assert GENERATED_ID.match(response.headers["X-Request-ID"])
        assert response.headers["X-Request-ID"] != request_id
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_a_new_request_id_for_every_request_without_one(client: Client) -> None:
    seen = {(await client.get("/products/")).headers["X-Request-ID"] for _ in range(5)}
    assert len(seen) == 5
    assert all(GENERATED_ID.match(request_id) for request_id in seen)


async def test_every_response_carries_request_id_and_process_time(
    small_client: Client,
) -> None:
    created = await small_client.post("/products/", json={"name": "Tea", "price": 1})
    path = created.headers["Location"]
    etag = created.headers["ETag"]
    responses = {
        201: created,
        200: await small_client.get(path),
        304: await small_client.get(path, headers={"If-None-Match": etag}),
        400: await small_client.post("/products/", data=b"[", headers=JSON),
        404: await small_client.get("/nope"),
        405: await small_client.post(path),
        412: await small_client.delete(path, headers={"If-Match": '"stale"'}),
        413: await small_client.post(
            "/products/", data=body_of_size(SMALL_LIMIT + 1), headers=JSON
        ),
        415: await small_client.post("/products/", data=b"{}", headers={"Content-Type": "a/b"}),
        422: await small_client.get("/products/?sort=nope"),
        204: await small_client.delete(path),
    }
    for status, response in responses.items():
        assert response.status == status
        assert PROCESS_TIME.match(response.headers["X-Process-Time-ms"]), status
        assert GENERATED_ID.match(response.headers["X-Request-ID"]), status


async def test_request_id_is_echoed_on_errors(client: Client) -> None:
    for response in (
        await client.get("/nope", headers={"X-Request-ID": "r-404"}),
        await client.post("/products/", data=b"{", headers={**JSON, "X-Request-ID": "r-404"}),
        await client.delete("/products/", headers={"X-Request-ID": "r-404"}),
    ):
        assert response.headers["X-Request-ID"] == "r-404"


# --- order of checks and the request deadline -----------------------------------------------------


async def test_malformed_request_comes_before_existence(small_client: Client) -> None:
    missing = "/products/999"
    await problem(await small_client.put(missing, data=b"{", headers=JSON), 400)
    await problem(
        await small_client.put(missing, data=body_of_size(SMALL_LIMIT + 1), headers=JSON), 413
    )
    await problem(await small_client.put(missing, data=b"{}", headers={"Content-Type": "a/b"}), 415)
    await problem(await small_client.patch(missing, json={"price": -1}), 422)
    await problem(
        await small_client.patch(missing, json={"price": 1}, headers={"If-Match": '"x"'}), 404
    )


@pytest.fixture
async def deadline_client(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    settings = dataclasses.replace(migrated, request_timeout_seconds=0.5)
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def test_a_client_that_never_finishes_its_body_is_cut_off(
    deadline_client: Client, database: Database
) -> None:
    server = deadline_client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            b"POST /products/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"name": '
        )
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode().strip().split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in header_lines)
            }
            payload = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    assert status_line.startswith("HTTP/1.1 408"), head
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("application/problem+json")
    assert PROCESS_TIME.match(headers["x-process-time-ms"])
    body = json.loads(payload)
    assert body["status"] == 408
    assert body["detail"] == "The request was not completed within 0.5 seconds"
    assert await product_count(database) == 0


# --- what the database refuses or cannot do ---------------------------------------------------


async def test_a_body_that_does_not_inflate_is_400(client: Client) -> None:
    """Found by review: a Content-Encoding the body does not match answered a 500."""
    response = await client.post(
        "/products/",
        data=b"this is not gzip",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    await problem(response, 400)


@pytest.mark.needs_postgresql
async def test_an_unreachable_database_is_a_retryable_503_not_a_500(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    """PostgreSQL restarting or out of reach: clients are told to retry, and it is logged.

    Only PostgreSQL can be out of reach (SQLite is a file): in `make test` too, the app is
    served from a database of its own on the test server, whose pool is then closed.
    """
    with contextlib.ExitStack() as stack:
        url = migrated.postgres_url or stack.enter_context(engines.own_database(migrated=True))
        app = create_app(dataclasses.replace(migrated, postgres_url=url))
        client = await aiohttp_client(app)
        await app[keys.DATABASE].close()
        response = await client.get("/products/")
        body = await problem(response, 503)
        assert response.headers["Retry-After"] == "5"
        assert "database" in body["detail"].lower()
        assert any("Database unavailable in GET /products/" in line for line in log_lines(migrated))


async def test_a_value_the_database_refuses_is_a_400_not_a_500(
    aiohttp_client: ClientFactory, migrated: Settings
) -> None:
    """What validation let through and the database refused is the client's error.

    Validation refuses lone surrogates before any route's query, so a route of the test's
    own sends one to the database, as a route would with a value validation missed.
    """
    app = create_app(migrated)

    async def unstorable(request: web.Request) -> web.Response:
        async with request.app[keys.DATABASE].read() as conn:
            await conn.fetch_all("SELECT :value AS value", {"value": "tea \ud800"})
        return web.json_response({})

    app.router.add_get("/unstorable", unstorable)
    client = await aiohttp_client(app)
    body = await problem(await client.get("/unstorable"), 400)
    assert "NUL" in body["detail"]
    assert any(
        "The database refused a value in GET /unstorable" in line for line in log_lines(migrated)
    )
