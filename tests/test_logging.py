"""The request log: one line per request, escaped, JSON mode, no secrets in tracebacks."""

from __future__ import annotations

import dataclasses
import json
import re
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from loguru import logger
from yarl import URL

from service.app import create_app
from service.settings import Settings
from tests.conftest import log_lines

TIME = re.compile(r"^\d+\.\d{2}$")
REQUEST_LINE = re.compile(r" \| INFO +\| [A-Z]+ \S.* выполнялся \d+\.\d\d мс \| ")
SECRET = "hunter2-secret"


def request_lines(settings: Settings) -> list[str]:
    return [line for line in log_lines(settings) if REQUEST_LINE.search(line)]


async def test_one_line_per_request_with_its_fields(
    client: TestClient,  # type: ignore[type-arg]
    migrated: Settings,
) -> None:
    first = await client.get("/products/1", headers={"X-Request-ID": "req-1.a_B"})
    second = await client.get("/products/1", headers={"X-Request-ID": "req-2"})
    assert (first.status, second.status) == (404, 404)
    health = await client.get("/health", params={"secret": "query-is-not-logged"})
    assert health.status == 200

    lines = request_lines(migrated)
    assert len(lines) == 3, log_lines(migrated)
    pattern = re.compile(
        r"^.* \| INFO +\| GET /products/1 выполнялся \d+\.\d\d мс"
        r" \| status=404 request_id=(?P<id>\S+) client=(?P<client>\S+)$"
    )
    matches = [pattern.match(line) for line in lines[:2]]
    assert all(matches), lines
    assert [m["id"] for m in matches if m] == ["req-1.a_B", "req-2"]
    assert all(m["client"] == "127.0.0.1" for m in matches if m)
    assert re.match(r"^.* \| INFO +\| GET /health выполнялся \d+\.\d\d мс \| status=200 ", lines[2])
    assert "query-is-not-logged" not in migrated.log_file.read_text(encoding="utf-8")
    # the request id header is the logged one
    assert first.headers["X-Request-ID"] == "req-1.a_B"


async def test_generated_request_id_is_the_logged_one(
    client: TestClient,  # type: ignore[type-arg]
    migrated: Settings,
) -> None:
    response = await client.get("/products/1", headers={"X-Request-ID": "bad id\twith space"})
    request_id = response.headers["X-Request-ID"]
    assert request_id != "bad id\twith space"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", request_id)
    (line,) = request_lines(migrated)
    assert f"request_id={request_id} " in line


HEADER_CASES = [
    ("GET", "/health", 200),
    ("GET", "/products/1", 404),
    ("GET", "/no/such/route", 404),
    ("DELETE", "/health", 405),
    ("POST", "/products/", 422),
    ("POST", "/products/", 400),
]


async def test_process_time_header_has_two_decimals(
    client: TestClient,  # type: ignore[type-arg]
    migrated: Settings,
) -> None:
    """On successes and on every kind of error; one log line each, with its status."""
    for count, (method, path, status) in enumerate(HEADER_CASES, start=1):
        body = b"{not json" if status == 400 else b'{"name": "x"}'
        response = await client.request(
            method, path, data=body, headers={"Content-Type": "application/json"}
        )
        case = f"{method} {path} -> {status}"
        assert response.status == status, case
        assert TIME.match(response.headers["X-Process-Time-ms"]), (case, response.headers)
        assert response.headers["X-Request-ID"], case
        lines = request_lines(migrated)
        assert len(lines) == count, (case, lines)
        assert f"| {method} {path} выполнялся " in lines[-1], case
        assert f"status={status} " in lines[-1], case


CONTROLS = ["%0A", "%0D", "%0D%0A", "%1B", "%E2%80%A8", "%00"]


async def test_path_cannot_forge_a_log_line(
    client: TestClient,  # type: ignore[type-arg]
    migrated: Settings,
) -> None:
    forged = "2026-01-01 00:00:00.000 | INFO     | GET /admin выполнялся 1.00 мс"
    for count, control in enumerate(CONTROLS, start=1):
        path = f"/products/1{control}{quote(forged)}"
        response = await client.get(URL(path, encoded=True))
        assert response.status == 404, control
        lines = log_lines(migrated)
        assert len(lines) == count, (control, lines)  # one physical line per request
        assert not any(line.startswith("2026-01-01 00:00:00.000") for line in lines), control
        last = lines[-1]
        assert re.search(r"\\(x[0-9a-f]{2}|[nr]|u[0-9a-f]{4})", last), (control, last)
        assert last.endswith("client=127.0.0.1"), (control, last)
    # the separators the terminal and some viewers treat as line breaks are gone too
    text = migrated.log_file.read_text(encoding="utf-8")
    assert not set(text) & {"\r", "\x00", "\x1b", "\u2028"}


async def test_json_log_is_one_object_per_line(
    aiohttp_client,
    migrated: Settings,
) -> None:
    settings = dataclasses.replace(migrated, log_json=True)
    client: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await client.get("/products/1", headers={"X-Request-ID": "json-1"})
    await client.get(URL("/products/1%0Aforged", encoded=True), headers={"X-Request-ID": "j2"})
    await client.get("/health", headers={"X-Request-ID": "json-3"})

    lines = log_lines(settings)
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    requests = [o["record"] for o in objects if "выполнялся" in o["record"]["message"]]
    assert len(requests) == 3, lines
    assert [(r["extra"]["status"], r["extra"]["request_id"]) for r in requests] == [
        (404, "json-1"),
        (404, "j2"),
        (200, "json-3"),
    ]
    assert all(r["level"]["name"] == "INFO" for r in requests)
    assert all(r["extra"]["client"] == "127.0.0.1" for r in requests)
    assert re.fullmatch(r"GET /products/1 выполнялся \d+\.\d\d мс", requests[0]["message"])
    assert "\n" not in requests[1]["message"]


async def test_no_access_log_duplicates(
    client: TestClient,  # type: ignore[type-arg]
    migrated: Settings,
) -> None:
    for _ in range(3):
        await client.get("/health")
    lines = log_lines(migrated)
    assert len([line for line in lines if "/health" in line]) == 3, lines
    assert not any('HTTP/1.1"' in line for line in lines)


def _boom_app(settings: Settings) -> web.Application:
    app = create_app(settings)

    async def boom(_: web.Request) -> web.Response:
        password = SECRET
        # Not an f-string: loguru's diagnose would annotate `password` here with its value.
        raise RuntimeError("broken after reading %d characters" % len(password))  # noqa: UP031

    app.router.add_get("/boom", boom)
    return app


@pytest.mark.parametrize("log_json", [False, True])
async def test_500_traceback_is_logged_without_local_values(
    aiohttp_client,
    migrated: Settings,
    log_json: bool,
) -> None:
    settings = dataclasses.replace(migrated, log_json=log_json)
    client: TestClient = await aiohttp_client(_boom_app(settings))  # type: ignore[type-arg]
    response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    assert TIME.match(response.headers["X-Process-Time-ms"])
    text = await response.text()
    body = json.loads(text)
    assert body["status"] == 500
    assert isinstance(body["detail"], str)
    assert SECRET not in text
    assert "Traceback" not in text and "RuntimeError" not in text and "boom" not in text

    log = settings.log_file.read_text(encoding="utf-8")
    assert "Traceback" in log
    assert "RuntimeError: broken after reading 14 characters" in log
    assert "in boom" in log
    assert SECRET not in log
    if not log_json:
        (line,) = request_lines(settings)
        assert "| GET /boom выполнялся " in line and "status=500 " in line
        (error,) = [line for line in log_lines(settings) if "| ERROR " in line]
        assert error.endswith("Unhandled error in GET /boom | request_id=boom-1 client=127.0.0.1")
    else:
        records = [json.loads(line)["record"] for line in log_lines(settings)]
        (error,) = [r for r in records if r["level"]["name"] == "ERROR"]
        assert error["extra"] == {"request_id": "boom-1", "client": "127.0.0.1"}
        assert "RuntimeError" in error["exception"]["type"]


async def test_every_record_written_for_a_request_carries_its_id_and_client(
    aiohttp_client,
    migrated: Settings,
) -> None:
    """A record written by code that was handed neither names the request and client."""
    app = create_app(migrated)

    async def deep(_: web.Request) -> web.Response:
        logger.warning("written by code that knows nothing of the request")
        return web.Response(text="ok")

    app.router.add_get("/deep", deep)
    client: TestClient = await aiohttp_client(app)  # type: ignore[type-arg]
    assert (await client.get("/deep", headers={"X-Request-ID": "deep-1"})).status == 200
    (line,) = [line for line in log_lines(migrated) if "knows nothing" in line]
    assert line.endswith("| request_id=deep-1 client=127.0.0.1"), line
    # Outside a request, no request's fields linger.
    logger.warning("after the request")
    (after,) = [line for line in log_lines(migrated) if "after the request" in line]
    assert "request_id=" not in after


async def test_two_apps_in_one_process_start_and_stop(migrated: Settings) -> None:
    """Each app removed every loguru sink, so the second one's cleanup crashed."""
    first = TestServer(create_app(migrated))
    second = TestServer(create_app(migrated))
    await first.start_server()
    await second.start_server()
    await first.close()
    await second.close()
